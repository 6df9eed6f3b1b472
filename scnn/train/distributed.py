"""Data-parallel training over several processes (torch.distributed: gloo on CPU, nccl on GPUs).

One run, ``world_size`` processes, each with a full copy of the model. :func:`scnn.train.loop.fit` draws
the same global batch in every process (the shuffle and augmentation generators are seeded alike and
advance alike), augments it whole, and each process computes the loss of its slice of it
(:meth:`World.local_slice`), scaled by ``len(slice) / len(batch)``. The gradients are then summed over
the processes (:meth:`World.sum_gradients`), which gives every process the gradient of the mean loss over
the whole global batch, so each optimiser step is the single-process step with ``batch_size`` samples.

What is the same as one process with the same ``train.batch_size`` (tests/test_ddp.py): the order of the
samples, their augmentation, the learning-rate schedule, and the weights after every step, up to the
rounding of summing two partial gradients instead of one (float32: within 1e-5 after a few epochs on the
test's fixture). Not the same: dropout masks (each process draws its own from torch's generator) and
anything that mixes samples inside a batch (batch normalisation, which the spec nets do not use).

Launch with ``torchrun --nproc_per_node N -m scnn train ...`` (torchrun sets RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT; :func:`init_from_environment` reads them), or ``scnn train --ddp N``, which
starts N local processes on the loopback itself (:func:`launch_local`). Rank 0 alone locks and writes the
run folder (checkpoints, history, results); every process reads ``last.pt`` to resume. Validation runs in
every process on the whole validation split (identical weights give identical numbers, so early
stopping agrees without a message; it costs each process the full validation pass).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import torch

ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` in ``0 .. world_size - 1`` (a single process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def local_slice(self, batch_size: int) -> slice:
        """This process's part of a global batch of ``batch_size`` samples: contiguous, sizes differing by at
        most one (as ``torch.tensor_split``), possibly empty when the batch is smaller than the world."""
        base, extra = divmod(batch_size, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def sum_gradients(self, model: torch.nn.Module) -> None:
        """Replace every parameter's gradient by its sum over the processes (one all-reduce of one flat
        buffer; a parameter without a gradient here counts as zeros, so every process sends the same sizes).
        A parameter that has a gradient in no process keeps None, as in a single process, where the
        optimiser then leaves it alone (a zero gradient would still move it through momentum and decay)."""
        if not self.distributed:
            return
        parameters = [p for p in model.parameters() if p.requires_grad]
        present = torch.tensor([float(p.grad is not None) for p in parameters], dtype=torch.float64)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(present, op=torch.distributed.ReduceOp.SUM)
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for parameter, anywhere in zip(parameters, present.tolist()):
            size = parameter.numel()
            parameter.grad = flat[offset:offset + size].view_as(parameter).clone() if anywhere else None
            offset += size

    def sum_values(self, *values: float) -> list[float]:
        """Each value summed over the processes (float64)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor.tolist()

    def broadcast_parameters(self, model: torch.nn.Module) -> None:
        """Every process takes rank 0's weights and buffers (the same seed already gives the same ones;
        this makes it so whatever built them)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                torch.distributed.broadcast(tensor.data, src=0)

    def main_first(self, job: Callable, others: Callable | None = None):
        """Run ``job`` in rank 0 first, then ``others`` (default: ``job``) in the other processes once it
        succeeded: preparing the data fills the feature cache once, and a refused run folder stops every
        process with rank 0's message instead of leaving them waiting. Returns what the job returned."""
        if not self.distributed:
            return job()
        result, failure = None, None
        if self.is_main:
            try:
                result = job()
            except BaseException as error:  # noqa: BLE001  told to the others, then raised here
                failure = error
        message = [None if failure is None else f"{type(failure).__name__}: {failure}"]
        torch.distributed.broadcast_object_list(message, src=0)
        if failure is not None:
            raise failure
        if message[0] is not None:
            raise RuntimeError(f"rank 0 failed ({message[0]}); process {self.rank} stops too")
        if not self.is_main:
            result = (others or job)()
        return result

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def current_world() -> World:
    """The world of the initialised process group (a single process when there is none)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return World(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return World()


def environment_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by it)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be a positive integer, got {value!r}") from None
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be a positive integer, got {value!r}")
    return size


def threads_per_process(world_size: int, requested: int = 0) -> int:
    """Torch threads of each process: ``requested`` when given, else this machine's cores shared out
    (at least one), so that N processes do not each start one thread per core."""
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // world_size)


def init_from_environment(device: str = "cpu", threads: int = 0) -> World:
    """Join the process group torchrun (or :func:`launch_local`) describes in the environment; a single
    process when WORLD_SIZE is 1 or unset. Backend: nccl for a CUDA device (each process on
    ``cuda:LOCAL_RANK``), gloo otherwise. Sets torch's threads to this process's share of the cores."""
    world_size = environment_world_size()
    if world_size == 1:
        return current_world()
    missing = [name for name in ENVIRONMENT if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world_size} but {', '.join(missing)} unset: launch with torchrun "
                         "--nproc_per_node N -m scnn train ..., or scnn train --ddp N")
    torch.set_num_threads(threads_per_process(world_size, threads))
    if not torch.distributed.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
        torch.distributed.init_process_group(backend)
    return current_world()


def free_port() -> int:
    """A TCP port free on the loopback now (for the processes' rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _local_worker(rank: int, world_size: int, port: int, job: Callable, args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        job(*args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def launch_local(world_size: int, job: Callable, *args) -> None:
    """Run ``job(*args)`` in ``world_size`` new processes on this machine (torch.multiprocessing spawn),
    each with the environment torchrun would give it; the job calls :func:`init_from_environment`.
    A process that fails stops the others; its error's last line is raised here as a RuntimeError.
    ``job`` must be importable (module level)."""
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"--ddp needs at least 1 process, got {world_size}")
    try:
        mp.spawn(_local_worker, args=(world_size, free_port(), job, args), nprocs=world_size, join=True)
    except mp.ProcessRaisedException as error:
        # The child's traceback ends with "module.ErrorType: message": the line a user needs.
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise RuntimeError(f"data-parallel training failed: {lines[-1] if lines else error}") from error
