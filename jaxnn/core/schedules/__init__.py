"""Member schedules inside one run: successive halving and Hyperband (members leave the batch
at rungs, `halving`) and population-based training (members take over better members' states,
`pbt`); `members` ranks and moves members, `driver` runs a launch under its schedule.

The host only decides when; every move of member state is a gather or a scatter on the device
over the whole `TrainState`. Each decision is an event row (step, member, ...) that `jaxnn.run`
appends to DIR/schedule.jsonl; summary.json gets each member's `schedule` block.
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
