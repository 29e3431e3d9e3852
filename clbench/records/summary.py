"""The summary metrics of records, computed here and nowhere else.

A continual record's summary (`summarise`) and every row of `clbench compare` (clbench.report.rows) come from
the same functions: final accuracy (mean/std over orders x networks), average incremental accuracy (per
order and network, the mean over the steps), forgetting (per order, the mean over the classes learnt before
the last step of best earlier accuracy - final accuracy), the seconds spent, and the accuracy curve. Only
orders whose every step is done count for the metrics; an unfinished order counts for the curve and the
seconds. A static record's summary (`summarise_static`) is the mean of test accuracy per evaluation network.

Accuracies are percentages. Standard deviations are population std (numpy's default), as in the DM/DDM code.
Values are pooled in the order given, so that the same orders always give the same bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and population std, or (None, None) for no values."""
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


# -- one order -----------------------------------------------------------------------------------------------
def order_final_accuracies(order: dict[str, Any]) -> list[float]:
    """Accuracy of each network index after the order's last step."""
    return [float(a) for a in order["steps"][-1]["accuracies"]]


def order_incremental_accuracies(order: dict[str, Any]) -> list[float]:
    """Average incremental accuracy of each network index of an order: its mean over the steps."""
    per_net = np.array([s["accuracies"] for s in order["steps"]], dtype=float)  # steps x networks
    return per_net.mean(axis=0).tolist()


def order_forgetting(order: dict[str, Any]) -> float | None:
    """Mean over classes learnt before the last step of (best earlier accuracy - final accuracy)."""
    steps = order["steps"]
    if len(steps) < 2:
        return None
    final = {int(c): a for c, a in steps[-1]["class_accuracy"].items()}
    drops = []
    for c in final:
        earlier = [float(s["class_accuracy"][str(c)]) for s in steps[:-1] if str(c) in s["class_accuracy"]]
        if earlier:
            drops.append(max(earlier) - final[c])
    return float(np.mean(drops)) if drops else None


def order_seconds(order: dict[str, Any], kind: str) -> float:
    """Seconds of one `kind` ("condense" or "train") over the order's steps."""
    return total_seconds([order], kind)


# -- many orders -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metrics:
    """The accuracy metrics over the complete orders given: (mean, std) each, and how much was pooled."""

    final: tuple[float | None, float | None]
    incremental: tuple[float | None, float | None]
    forgetting: tuple[float | None, float | None]
    orders: int  # complete orders pooled
    n: int  # final accuracies pooled: complete orders x networks


def metrics(orders: Iterable[dict[str, Any]]) -> Metrics:
    """Final accuracy, average incremental accuracy and forgetting over the orders whose every step is done."""
    # a complete order without steps has no final accuracy; a run never writes one (hand-made records can)
    complete = [o for o in orders if o.get("complete") and o["steps"]]
    final = [a for o in complete for a in order_final_accuracies(o)]
    incremental = [a for o in complete for a in order_incremental_accuracies(o)]
    forgetting = [f for o in complete if (f := order_forgetting(o)) is not None]
    return Metrics(mean_std(final), mean_std(incremental), mean_std(forgetting), len(complete), len(final))


def total_seconds(orders: Iterable[dict[str, Any]], kind: str) -> float:
    """Seconds of one `kind` ("condense" or "train") over every step of the orders, finished or not."""
    return float(sum(s.get(f"{kind}_seconds", 0.0) for o in orders for s in o["steps"]))


def accuracy_curve(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy after each step, pooled over every order that reached it: classes seen, mean, std, n."""
    curve = []
    for t in range(max((len(o["steps"]) for o in orders), default=0)):
        reached = [o["steps"][t] for o in orders if len(o["steps"]) > t]
        accs = [float(a) for s in reached for a in s["accuracies"]]
        mean, std = mean_std(accs)
        curve.append({"classes": len(reached[0]["seen_classes"]), "mean": mean, "std": std, "n": len(accs)})
    return curve


def summarise(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """A continual record's `summary`: the metrics over its complete orders, seconds and curve over all."""
    m = metrics(orders)
    return {
        "final_accuracy_mean": m.final[0],
        "final_accuracy_std": m.final[1],
        "average_incremental_accuracy_mean": m.incremental[0],
        "average_incremental_accuracy_std": m.incremental[1],
        "forgetting_mean": m.forgetting[0],
        "forgetting_std": m.forgetting[1],
        "orders_complete": m.orders,
        "condense_seconds": total_seconds(orders, "condense"),
        "train_seconds": total_seconds(orders, "train"),
        "curve": accuracy_curve(orders),
    }


# -- static records --------------------------------------------------------------------------------------------
def static_accuracies(sets: Iterable[dict[str, Any]], network: str) -> list[float]:
    """Every test accuracy of evaluation network `network` over the complete sets (sets x evaluations)."""
    return [a for s in sets if s.get("complete") for a in s["accuracies"].get(network, [])]


def summarise_static(sets: list[dict[str, Any]], eval_nets: list[str]) -> dict[str, Any]:
    """A static record's `summary`: mean and population std of test accuracy per evaluation network over the
    complete sets x evaluations; seconds over every set."""
    done = [s for s in sets if s.get("complete")]
    networks = {}
    for name in eval_nets:
        values = static_accuracies(done, name)
        mean, std = mean_std(values)
        networks[name] = {"mean": mean, "std": std, "n": len(values)}
    return {
        "accuracy": networks,
        "sets_complete": len(done),
        "condense_seconds": float(sum(s["condense_seconds"] for s in sets)),
        "train_seconds": float(sum(sum(s["train_seconds"].values()) for s in sets)),
    }
