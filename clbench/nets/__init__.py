"""The networks condensers embed with and evaluation trains (`networks`: ConvNet with its style taps, AlexNet,
VGG-11, ResNet-18) and differentiable Siamese augmentation (`augment`: parameters sampled once, then applied
by pure functions).

May import: clbench.core.
"""
