"""The run's front end: a config, the user's components and a sweep given from Python resolved
into the run they describe (`jaxnn.run_spec.RunSpec`), after every check that needs no data
(`jaxnn.validation.check_sections` and `check_members`). `jaxnn.run`, `jaxnn.fit`,
`jaxnn.fit_ensemble` and `jaxnn.fit_variants` enter here once; every later phase reads the
RunSpec and never re-parses the config. The checks that need the loaded data are
`jaxnn.validation.check_against_data`."""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxnn import validation
from jaxnn.config import schedule as schedule_lib
from jaxnn.config import search as search_lib
from jaxnn.config import sweep as sweep_lib
from jaxnn.config.fields import NumericField
from jaxnn.config.paths import expand_user
from jaxnn.config.schema import default_config
from jaxnn.errors import ConfigError
from jaxnn.nn import family as family_lib
from jaxnn.nn.components import Components
from jaxnn.nn.user_model import UserModel
from jaxnn.run_spec import RunSpec, model_family, numeric_fields

# Fields outside `model` that a sweep may vary with one compiled program per value.
STRUCTURAL_FIELDS = (
    "model.name",
    "loss",
    "optimizer.name",
    "training.batch_size",
    "augment.shift_mode",
    "augment.flip",
)


def resolve(
    config: ml_collections.ConfigDict,
    components: Components | None = None,
    *,
    sweep: sweep_lib.SweepSpec | sweep_lib.Sweep | None = None,
) -> RunSpec:
    """The run `config` (not changed) describes, with every structural variant: every field
    that can be checked without data checked, the sweep parsed once and the search's points
    drawn. `sweep` (a string, a mapping field -> values, or a Sweep) replaces
    `config.restarts.sweep`.

    Raises:
      ConfigError: the first mistake, in one line.
    """
    components = components or Components()
    check_config_type(config)
    family = model_family(config, components)
    if isinstance(components.model, UserModel):
        values = components.model.values(config.model)
        config = sweep_lib.with_values(config, {f"model.{k}": v for k, v in values.items()})
    given = sweep_lib.split_spec(config.restarts.sweep if sweep is None else sweep)
    searched = search_lib.split_search(config.restarts.search)
    validation.check_sections(config, family, components, varied=[*given, *searched])
    source, cache = config.init_from.workdir, config.compilation_cache.dir
    source_workdir = expand_user(source, "init_from.workdir") if source else None
    compile_cache_dir = expand_user(cache, "compilation_cache.dir") if cache else None
    fields, resolved, search = _resolve_members(config, family, components, given)
    canonical = sweep_lib.with_values(
        config,
        {"restarts.sweep": resolved.to_spec()}
        | ({} if search is None else {"restarts.search": search.to_spec()}),
    )
    structural = resolved.structural_variants() if resolved.structural else ()
    variants = tuple(
        (v, resolve(sweep_lib.with_values(canonical, v), components, sweep=resolved.numeric_only()))
        for v in structural
    )
    return RunSpec(
        config=canonical,
        sweep=resolved,
        family=family,
        components=components,
        fields=fields,
        variants=variants,
        search=search,
        source_workdir=source_workdir,
        compile_cache_dir=compile_cache_dir,
    )


def resolve_call(
    config: Any,
    dataset: Any,
    key: Any,
    components: Components | None = None,
    *,
    sweep: sweep_lib.SweepSpec | sweep_lib.Sweep | None = None,
) -> RunSpec:
    """`resolve` for the entry points that train on given data, the data set and key checked too.

    Raises:
      ConfigError, DataError: the first mistake, in one line.
    """
    validation.check_dataset(dataset)
    validation.check_key(key)
    return resolve(config, components, sweep=sweep)


def _resolve_members(
    config: ml_collections.ConfigDict,
    family: family_lib.ModelFamily,
    components: Components,
    given: dict[str, list[Any]],
) -> tuple[dict[str, NumericField], sweep_lib.Sweep, search_lib.Search | None]:
    """The members' numeric fields, the sweep's values (`given`) resolved and the search's
    points drawn over them, each value checked, and the member schedule checked."""
    member_fields = numeric_fields(config, family, components)
    resolved = sweep_lib.resolve(
        given,
        config,
        numeric_fields=member_fields,
        structural_fields=(*STRUCTURAL_FIELDS, *family.structural_fields),
    )
    search = search_lib.resolve(
        config.restarts.search,
        method=config.restarts.search_method,
        num=config.restarts.num,
        seed=config.seed,
        numeric_fields=member_fields,
    )
    validation.check_members(config, family, resolved, search)
    schedule_lib.resolve(
        config.restarts,
        searched=search is not None,
        num_members=len(resolved.numeric_variants()) * config.restarts.num,
    )
    return member_fields, resolved, search


def check_config_type(config: Any) -> None:
    """The config is an `ml_collections.ConfigDict` with every field of `default_config()`
    (else a ConfigError)."""
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            "config must be an ml_collections.ConfigDict such as jaxnn.default_config() (changed "
            f"as needed), got {type(config).__name__}"
        )
    for field in _schema_fields():
        node = config
        for part in field.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise ConfigError(
                    f"config has no field {field}: start from jaxnn.default_config() and change "
                    "the fields you need"
                )
            node = node[part]


def _schema_fields(node: ml_collections.ConfigDict | None = None, prefix: str = "") -> list[str]:
    node = default_config() if node is None else node
    fields = []
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            fields += _schema_fields(value, f"{prefix}{key}.")
        else:
            fields.append(f"{prefix}{key}")
    return fields
