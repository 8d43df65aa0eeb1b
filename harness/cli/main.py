"""Command line: ``python -m harness run|tune|ls|params|report|reproduce|analyze|records``.

Every user error (unknown name, bad option, missing data) is one line on stderr and exit code 2,
raised before any model is loaded. The parser is ``harness.cli.parser``; each command lives in its own
module: ``cli_run`` (run), ``cli_info`` (ls, params), ``cli_report`` (report, reproduce, analyze).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from harness.cli.parser import EXIT_USAGE, build_parser
from harness.errors import HarnessError, path_error


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "run":
            from harness.cli.run import cmd_run

            return cmd_run(args, parser)
        if args.command == "tune":
            from harness.cli.tune import cmd_tune

            return cmd_tune(args, parser)
        if args.command in ("ls", "params"):
            from harness.cli.info import cmd_ls, cmd_params

            return cmd_ls(args) if args.command == "ls" else cmd_params(args)
        if args.command in ("report", "reproduce", "analyze"):
            from harness.cli.report import cmd_analyze, cmd_report, cmd_reproduce

            command = {"report": cmd_report, "reproduce": cmd_reproduce, "analyze": cmd_analyze}[args.command]
            return command(args)
        if args.command == "records":
            from harness.cli.records import cmd_records

            return cmd_records(args)
    except HarnessError as exc:
        from harness.untrusted import terminal_text

        print(f"error: {terminal_text(exc)}", file=sys.stderr)  # messages may quote record values
        return EXIT_USAGE
    except OSError as exc:  # a path the OS refuses (too long, no permission, read-only): one line, no traceback
        print(f"error: {path_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP turned into one by harness/signals.py
        from harness.signals import exit_code, signal_name

        print(f"interrupted ({signal_name(exit_code(exc) - 128)})", file=sys.stderr)
        return exit_code(exc)
    return EXIT_USAGE
