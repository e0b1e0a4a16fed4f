"""Hydra composition without Hydra's app runner (no working-directory change, no outputs/ folder).

Groups: `method` = every `baselines/*.yaml`, `task` = every `tasks/*/task.yaml`, `budget` =
`conf/budget/*.yaml`, `models` = `conf/models/*.yaml` (presets). Each is merged into the typed schema (`schema.Config`), so an unknown key
or a wrongly typed value is an error at composition time, before anything runs.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import OpdbenchError
from .schema import Config

CONF_DIR = Path(__file__).parent
REPO_DIR = CONF_DIR.parents[1]
BASELINES_DIR = REPO_DIR / "baselines"
TASKS_DIR = REPO_DIR / "tasks"


def baseline_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BASELINES_DIR.glob("*.yaml"))}


def task_files() -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(TASKS_DIR.glob("*/task.yaml"))}


_registered: tuple = ()


def _register() -> None:
    """Put the schema, every baseline and every task in Hydra's config store. Parsing ~60 YAML files
    costs ~0.5 s, so it is redone only when a file was added, removed or edited since the last call
    (a leaderboard composes one config per method and task)."""
    global _registered
    groups = {"method": baseline_files(), "task": task_files()}
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for files in groups.values() for p in files.values())
    if key == _registered:
        return
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for group, files in groups.items():
        for name, path in files.items():
            store.store(group=group, name=name, node=OmegaConf.load(path))
    _registered = key


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The resolved config for these Hydra overrides; user mistakes raise a one-line OpdbenchError."""
    _register()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
        if cfg.method.rollout:  # a method's own rollout settings (e.g. bf16 for TIS) replace the defaults
            cfg.rollout = OmegaConf.merge(cfg.rollout, cfg.method.rollout)
    except MissingConfigException as err:
        group = next((g for g in ("method", "task", "budget", "models") if f"'{g}/" in str(err)), None)
        if group is None:
            raise OpdbenchError(_first_line(err)) from err
        options = getattr(err, "options", None) or _options(group)
        asked = next((o.split("=", 1)[1] for o in reversed(overrides)  # the last one wins, as in Hydra
                      if o.split("=", 1)[0].lstrip("+") == group), "?")
        raise OpdbenchError(f"unknown {group} {asked!r}; valid: {', '.join(options)}") from err
    except (HydraException, OmegaConfBaseException) as err:
        cause = f" ({_first_line(err.__cause__)})" if err.__cause__ is not None else ""
        raise OpdbenchError(f"bad config override: {_first_line(err)}{cause}") from err
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _options(group: str) -> list[str]:
    if group == "method":
        return list(baseline_files())
    if group == "task":
        return list(task_files())
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))  # budget, models


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
