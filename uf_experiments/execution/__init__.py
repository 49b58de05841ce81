"""Where engines run (``execution=``): the run's driver keeps the scheduler, the request cache, the budget, the
progress display and the files; an :class:`Execution` builds each model's engine.

- ``local`` (:mod:`.local`, the default): every engine in this process; a vLLM model takes the device slot, so a
  whole pool runs on one GPU model after model.
- ``ray`` (:mod:`.cluster`, :mod:`.replicas`, :mod:`.actor`): each vLLM model runs in Ray actors that hold their own
  GPUs (``engine.num_gpus``, ``engine.replicas`` data-parallel copies), side by side when the cluster has the GPUs;
  Ray's scheduler places them, and actors only run whole batches. Ray is imported only on this path.
"""

from uf_experiments.execution.local import Execution, LocalExecution, start_execution

__all__ = ["Execution", "LocalExecution", "start_execution"]
