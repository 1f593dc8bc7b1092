"""The `vlm2vla` command: one subcommand per pipeline stage.

    vlm2vla <stage> [--config NAME_OR_PATH] [--overwrite] [--print-config] [key=value ...]
    vlm2vla tasks [SPEC]      what tasks, groups and instruction splits there are

The stages are registered in vlm2vla.stages (imported only when a stage runs or shows its help). The
CLI opens the run directory (config + manifest), calls the stage and records success or failure there.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence

from vlm2vla.config import ConfigError, describe_fields, load_config, named_configs
from vlm2vla.stages import STAGES, stage_config, stage_function, stage_summary

log = logging.getLogger("vlm2vla")

TASKS_HELP = "List the simulators, task groups, tasks and instruction splits that collect and eval accept."
# Line width of the field descriptions in `vlm2vla <stage> --help`.
HELP_WIDTH = 100


def _stage_help(name: str) -> str:
    rows = describe_fields(stage_config(name))
    lines = [stage_summary(name), "", "config fields (override with key=value):"]
    for row in rows:
        lines.append(f"  {row.name}: {row.type} = {row.default}")
        lines += textwrap.wrap(row.help, width=HELP_WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
        if row.choices:
            lines.append(f"      choices: {', '.join(row.choices)}")
    lines += ["", f"shipped configs: {', '.join(named_configs()) or 'none'}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per stage."""
    parser = argparse.ArgumentParser(prog="vlm2vla", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name in STAGES.names():
        summary = stage_summary(name)
        p = sub.add_parser(name, help=summary, description=summary,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", help="a config name under configs/ (e.g. demo/collect) or a YAML path")
        p.add_argument("--overwrite", action="store_true", help="delete the run directory and start afresh")
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
        p.set_defaults(stage_name=name)
    tasks = sub.add_parser("tasks", help=TASKS_HELP, description=TASKS_HELP)
    tasks.add_argument("spec", nargs="?", help="a task, a group or a comma-separated mix (e.g. mt10, reach)")
    tasks.set_defaults(stage_name=None)
    return parser


def print_tasks(spec: str | None) -> int:
    """`vlm2vla tasks [SPEC]`: print the simulators, task groups, tasks and instruction splits."""
    from vlm2vla.sim import UnknownTaskError
    from vlm2vla.sim.catalog import format_catalog

    try:
        print(format_catalog(spec))
    except UnknownTaskError as err:
        log.error("%s", err)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vlm2vla` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] in STAGES and argv[1] in ("-h", "--help"):
        # argparse cannot render the field table lazily, so stage help is printed here.
        print(f"usage: vlm2vla {argv[0]} [--config NAME_OR_PATH] [--overwrite] [--print-config] [key=value ...]\n")
        print(_stage_help(argv[0]))
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.stage_name is None:
        return print_tasks(args.spec)
    try:
        cfg = load_config(stage_config(args.stage_name), args.config, args.overrides)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(OmegaConf.structured(cfg)), end="")
        return 0
    return run_stage(args.stage_name, cfg, overwrite=args.overwrite)


def run_stage(name: str, cfg, overwrite: bool = False) -> int:
    """Open the run directory for `cfg`, run the stage, record the outcome; returns an exit code."""
    from vlm2vla.runs import Run

    try:
        run = Run.open(cfg.run_dir, name, cfg, overwrite=overwrite)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    try:
        stage_function(name)(cfg, run)
    except (Exception, KeyboardInterrupt) as err:
        run.fail(err)
        if isinstance(err, KeyboardInterrupt):
            log.error("Interrupted; re-run the same command to resume from %s", run.dir)
            return 130
        if isinstance(err, ValueError | FileNotFoundError | ConnectionError):
            # Input errors (and an unreachable server) carry a message that says what to fix; a traceback
            # would bury it.
            log.error("%s", err)
            return 2
        raise
    log.info("%s finished; outputs in %s", name, run.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
