"""Member schedules: successive halving and Hyperband (members leave the batch at rungs) and
population-based training (members take over better members' states), inside one run.

The host only decides when; every move of member state is a gather or a scatter on the device
over the whole `TrainState`, so any field a state carries moves with it.

- `halving`: the rungs, Hyperband's brackets, who survives a rung (`plan_rungs`, `prune`);
- `pbt`: PBT's exploit and explore (`make_exploit`), its interval and its decision keys;
- `members`: what both do with members: rank them, gather, scatter, stop and copy them;
- `driver`: `drive`, the run under its schedule (instead of `jaxnn.core.loop.drive`), the
  checks made before anything is written (`check_plan`), each member's `schedule` block
  of summary.json (`member_blocks`), and a decision row's member indices moved between a
  variant's and the run's (`shift_members`).

Each decision is an event row (step, member, ...): halving `rung` and `score` of a pruned
member; PBT `parent` and the new hyperparameter values. `jaxnn.run` appends them to
DIR/schedule.jsonl and summary.json gets each member's `schedule` block.
"""

from jaxnn.core.schedules.driver import (
    ScheduleResult,
    check_plan,
    drive,
    member_blocks,
    run_schedule,
    shift_members,
)
from jaxnn.core.schedules.halving import RungPlan, plan_rungs, predicted_sizes, survivors
from jaxnn.core.schedules.pbt import HparamRange, hparam_ranges, make_exploit

__all__ = [
    "HparamRange",
    "RungPlan",
    "ScheduleResult",
    "check_plan",
    "drive",
    "hparam_ranges",
    "make_exploit",
    "member_blocks",
    "plan_rungs",
    "predicted_sizes",
    "run_schedule",
    "shift_members",
    "survivors",
]
