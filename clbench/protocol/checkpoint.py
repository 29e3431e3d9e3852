"""Per-order checkpoints beside a run record, and what a resumed run needs from them.

Every step's randomness is derived from (seed, order, step) (clbench.core.seeding), so continuing an order needs
only the memory after its last completed step and the records of the steps done: no RNG state. A checkpoint
holds exactly that, written atomically after every step and loaded with `torch.load(weights_only=True)`; for
the replay learner, whose one network carries over from step to step, also that network's weights and its
optimizer's state (SGD momentum), under `learner`.
For an order that is not complete, the checkpoint is the authority (the record is a view written beside it);
for a complete order, the record is, and its checkpoint is removed.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from torch import Tensor

from clbench.core.atomic import atomic_torch_save, atomic_write_json
from clbench.core.errors import UsageError
from clbench.core.tensorfile import UnreadableTensorFile, load_tensor_file
from clbench.records.record import RecordError, run_folder

CHECKPOINT_FORMAT = 1
# Keys of the resolved configuration that do not change what is computed: a resume may differ in them.
IGNORED_FOR_RESUME = frozenset({"profile_requested", "train.eval_batch_size"})
# Keys (flat, as `flatten` names them) that records written before them lack, with the value those records
# were made with. Every record before the GPU switches ran on a CPU, where tf32 and cuda_graphs change nothing
# and batched_networks=auto trains one network after the other, as those runs did. Before the reference-parity
# options (December 2026) every run resampled DSA with align_corners=True, trained with the "halves" schedule
# and drew random memories from the torch generator. A condenser_options key applies to the condensers that
# have that option.
RECORD_DEFAULTS = {"learner": "retrain", "train.tf32": False, "train.cuda_graphs": False,
                   "train.batched_networks": "auto", "train.dsa_align_corners": True, "train.schedule": "halves",
                   "condenser_options.tf32": False, "condenser_options.dsa_align_corners": True,
                   "condenser_options.draw": "generator"}


@dataclass
class OrderState:
    """Where an order stands: the steps done (their records) and the memory after the last of them."""

    order: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, Tensor] | None = None
    learner: dict[str, Any] | None = None  # replay: {"network": state_dict, "optimizer": state_dict}
    complete_entry: dict[str, Any] | None = None  # the record's entry when the order is complete

    @property
    def steps_done(self) -> int:
        return len(self.steps)


def checkpoint_path(record_path: Path, order: int) -> Path:
    return run_folder(record_path) / f"checkpoint-order{order}.pt"


def save_checkpoint(record_path: Path, run_id: str, order: int, steps: list[dict[str, Any]],
                    memory: dict[str, Tensor], learner: dict[str, Any] | None = None) -> None:
    """Atomically replace the order's checkpoint (steps as JSON text: the weights-only loader takes it as is)."""
    extra = {} if learner is None else {"learner": learner}
    atomic_torch_save(checkpoint_path(record_path, order), {
        **extra,
        "format": CHECKPOINT_FORMAT,
        "run_id": run_id,
        "order": order,
        "steps_done": len(steps),
        "steps_json": json.dumps(steps),
        "memory": {"images": memory["images"].cpu(), "labels": memory["labels"].cpu()},
    })


def load_checkpoint(record_path: Path, run_id: str, order: int) -> OrderState | None:
    """The order's saved state, None when it has none; a damaged or foreign checkpoint is a RecordError."""
    path = checkpoint_path(record_path, order)
    if not path.exists():
        return None
    hint = f"delete it to redo order {order} from its first step"
    try:
        data = load_tensor_file(path)
    except (OSError, UnreadableTensorFile) as exc:
        raise RecordError(f"checkpoint {path} is damaged ({exc}); {hint}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise RecordError(f"checkpoint {path} is not a clbench checkpoint of format {CHECKPOINT_FORMAT}; {hint}")
    if data.get("run_id") != run_id or data.get("order") != order:
        raise RecordError(
            f"checkpoint {path} belongs to run {data.get('run_id')!r}, order {data.get('order')!r}, not to run "
            f"{run_id!r}, order {order}; {hint}"
        )
    try:
        steps = json.loads(data["steps_json"])
        images, labels = data["memory"]["images"], data["memory"]["labels"]
        ok = (isinstance(steps, list) and len(steps) == data["steps_done"] and isinstance(images, Tensor)
              and isinstance(labels, Tensor) and images.shape[:1] == labels.shape)
    except (KeyError, TypeError, json.JSONDecodeError):
        ok = False
    learner = data.get("learner")
    if learner is not None and not (isinstance(learner, dict) and isinstance(learner.get("network"), dict)
                                    and isinstance(learner.get("optimizer"), dict)):
        ok = False
    if not ok:
        raise RecordError(f"checkpoint {path} is damaged (inconsistent fields); {hint}")
    return OrderState(order, steps, {"images": images, "labels": labels}, learner)


def remove_checkpoint(record_path: Path, order: int) -> None:
    checkpoint_path(record_path, order).unlink(missing_ok=True)


# -- one writer per record ------------------------------------------------------------------------------------
def lock_path(record_path: Path) -> Path:
    return run_folder(record_path) / "running.lock"


def acquire_lock(record_path: Path) -> None:
    """Refuse to write a record that a live process on this machine is writing (e.g. a resume typed in a second
    terminal); a lock left by a killed process, by this process's pid (a restarted container), or by another
    machine is taken over. Acquirers of one record take turns (`_one_at_a_time`), so looking at the lock and
    taking it (over) is one step: of several processes acquiring at once, one takes it, the others are refused."""
    path = lock_path(record_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {"pid": os.getpid(), "host": socket.gethostname()}
    with _one_at_a_time(path.parent):
        try:
            pid = _live_holder(path.read_text())
        except OSError:  # none, or unreadable: nobody to wait for
            pid = None
        if pid is not None:
            raise UsageError(f"{record_path} is being written by process {pid} on this machine; let it finish, "
                             f"or stop it (Ctrl-C, or kill {pid}) and resume afterwards")
        atomic_write_json(path, mine)  # readers never see a half-written lock


@contextlib.contextmanager
def _one_at_a_time(folder: Path) -> Iterator[None]:
    """A kernel lock on the run's folder for the duration: the kernel drops it when its holder dies, so it is
    never stale. (Where the filesystem has no flock, acquirers go unserialised, as before.)"""
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _live_holder(text: str) -> int | None:
    """The pid in a lock's `text` if that process lives on this machine and is not this one; else None."""
    try:
        holder = json.loads(text)
        pid, host = int(holder["pid"]), holder["host"]
    except (ValueError, KeyError, TypeError):
        return None
    return pid if pid != os.getpid() and host == socket.gethostname() and process_alive(pid) else None


def release_lock(record_path: Path) -> None:
    lock_path(record_path).unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- resuming ---------------------------------------------------------------------------------------------
def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 2}} -> {"train.epochs": 2}, so differences can be named key by key."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_differences(recorded: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """`key: <recorded> in the record, <given> now` for every key that changes what a run computes."""
    a, b = flatten(recorded), flatten(given)
    a.update({k: v for k, v in RECORD_DEFAULTS.items() if k not in a and k in b})
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in IGNORED_FOR_RESUME:
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if _normalise(va) != _normalise(vb):
            diffs.append(f"{key}: {va!r} in the record, {vb!r} now")
    return diffs


def _normalise(value: Any) -> Any:
    """JSON round trip: tuples and lists, ints and floats compare as they would once written."""
    return json.loads(json.dumps(value))


def check_resumable(record: dict[str, Any], source: str) -> None:
    """A record's structure as resuming reads it; anything else is called damaged, naming the field."""

    def damaged(what: str) -> RecordError:
        return RecordError(f"{source} is damaged: {what}; it cannot be resumed")

    config = record["config"]
    if not isinstance(config, dict):
        raise damaged("\"config\" is not an object")
    orders = config.get("orders")
    if not isinstance(orders, list) or not all(isinstance(o, int) for o in orders):
        raise damaged("\"config.orders\" is not a list of order numbers")
    if not isinstance(config.get("steps"), int):
        raise damaged("\"config.steps\" is not a number")
    if not isinstance(record["orders"], list):
        raise damaged("\"orders\" is not a list")
    for entry in record["orders"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("order"), int) \
                or not isinstance(entry.get("steps"), list):
            raise damaged("an entry of \"orders\" lacks its \"order\" number or its \"steps\" list")
        if entry["order"] not in orders:
            raise damaged(f"order {entry['order']} is not one of the configured orders {orders}")
        if entry.get("complete") and len(entry["steps"]) != config["steps"]:
            raise damaged(f"order {entry['order']} is marked complete with {len(entry['steps'])} of "
                          f"{config['steps']} steps")


def resume_states(record: dict[str, Any], record_path: Path) -> dict[int, OrderState]:
    """Per configured order: complete (from the record), part-done (from its checkpoint), or not started."""
    check_resumable(record, str(record_path))
    entries = {e["order"]: e for e in record["orders"]}
    states = {}
    for order in record["config"]["orders"]:
        entry = entries.get(order)
        if entry is not None and entry.get("complete"):
            states[order] = OrderState(order, entry["steps"], None, complete_entry=entry)
            continue
        state = load_checkpoint(record_path, record["run_id"], order)
        if state is not None and state.steps_done > record["config"]["steps"]:
            raise RecordError(f"checkpoint {checkpoint_path(record_path, order)} has more steps than the run; "
                              f"delete it to redo order {order}")
        states[order] = state or OrderState(order)
    return states
