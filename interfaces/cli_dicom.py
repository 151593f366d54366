"""``rishub echo | find | move | send``: the hub as a DICOM SCU towards a ``[modalities]`` entry.

Exit status: 0 success, 1 a DICOM failure (unreachable, rejected, a failure status, a file not
stored), 2 bad usage (unknown modality, bad level or key, missing file). Errors are one line on
stderr. ``interfaces.cli.build_parser`` calls :func:`register`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.errors import HubError
from hub.settings import Settings, load

if TYPE_CHECKING:  # imported when a command runs: keeps ``rishub --help`` and other commands fast
    from hub.services.remote import RemoteService

WithConfig = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def register(subparsers: Any, with_config: WithConfig) -> None:  # noqa: ANN401 - argparse's private type
    """Add the SCU subcommands to ``rishub``'s subparsers."""
    p = with_config(subparsers.add_parser("echo", help="C-ECHO a [modalities] entry"))
    p.add_argument("name", metavar="NAME", help="modality name from [modalities]")
    p.set_defaults(func=cmd_echo)

    p = with_config(subparsers.add_parser("find", help="C-FIND at a [modalities] entry (tab-separated lines)"))
    p.add_argument("name", metavar="NAME")
    _query_args(p)
    p.add_argument("--header", action="store_true", help="print the key names as a first line")
    p.set_defaults(func=cmd_find)

    p = with_config(subparsers.add_parser("move", help="C-MOVE from a [modalities] entry to an AE title"))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--to", required=True, metavar="AET", dest="destination", help="move destination AE title")
    _query_args(p)
    p.set_defaults(func=cmd_move)

    p = with_config(subparsers.add_parser("send", help="C-STORE files/folders or archived instances to a modality"))
    p.add_argument("name", metavar="NAME")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (recursively)")
    p.add_argument("--instance", action="append", default=[], metavar="ID",
                   help="archived instance (Orthanc id or SOP Instance UID); repeatable")
    p.set_defaults(func=cmd_send)


def _query_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--level", "-l", default="STUDY", type=str.upper,
                   help="PATIENT, STUDY, SERIES or IMAGE (default STUDY)")
    p.add_argument("--root", choices=["patient", "study"],
                   help="information model (default: patient for PATIENT, else study)")
    p.add_argument("-k", "--key", action="append", default=[], metavar="KEY[=VALUE]",
                   help="keyword or GGGG,EEEE; an empty value asks for the attribute back; repeatable")


def parse_keys(items: list[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name.strip():
            raise HubError("bad_request", f"-k {item!r}: expected KEY=VALUE or KEY")
        keys[name.strip()] = value
    return keys


# --------------------------------------------------------------------------- commands


def _settings(args: argparse.Namespace) -> Settings:
    settings = load(args.config)
    debug = settings.log_level.upper() == "DEBUG"
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pynetdicom logs every refused association at ERROR; our one-line message says it better.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    return settings


def _service(settings: Settings) -> RemoteService:
    from hub.services.remote import RemoteService
    from interfaces.dimse.scu import PynetdicomClient

    return RemoteService.build(settings, PynetdicomClient(settings), registry=True)


def _run(what: str, action: Callable[[], int]) -> int:
    from hub.services.remote import RemoteError

    try:
        return action()
    except RemoteError as exc:
        print(f"rishub: {what}: {exc}", file=sys.stderr)
        return 1
    except HubError as exc:
        print(f"rishub: {what}: {exc}", file=sys.stderr)
        return 2


def cmd_echo(args: argparse.Namespace) -> int:
    service = _service(_settings(args))

    def run() -> int:
        m = service.modality(args.name)
        result = service.echo(args.name)
        if not result.ok:
            print(f"rishub: echo {args.name}: status 0x{result.status:04X}", file=sys.stderr)
            return 1
        print(f"echo {m.name} ({m.aet}@{m.host}:{m.port}): success in {result.seconds * 1000:.0f} ms")
        return 0

    return _run(f"echo {args.name}", run)


def _cell(value: str) -> str:
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def cmd_find(args: argparse.Namespace) -> int:
    service = _service(_settings(args))

    def run() -> int:
        keys = parse_keys(args.key)
        answers = service.find(args.name, args.level, keys, args.root)
        from hub.services.remote import normalize_keys

        columns = list(normalize_keys(keys))
        if args.header:
            print("\t".join(columns))
        for answer in answers:
            print("\t".join(_cell(answer.get(c, "")) for c in columns))
        return 0

    return _run(f"find {args.name}", run)


def cmd_move(args: argparse.Namespace) -> int:
    service = _service(_settings(args))

    def run() -> int:
        r = service.move(args.name, args.level, parse_keys(args.key), args.destination, args.root)
        line = (f"move {args.name} -> {args.destination}: completed {r.completed}, failed {r.failed}, "
                f"warnings {r.warnings} (status 0x{r.status:04X}{', ' + r.comment if r.comment else ''}; "
                f"{r.seconds:.1f} s)")
        if r.ok:
            print(line)
            return 0
        print(f"rishub: {line}", file=sys.stderr)
        for uid in r.failed_sop_instance_uids[:20]:
            print(f"  failed {uid}", file=sys.stderr)
        return 1

    return _run(f"move {args.name}", run)


def cmd_send(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.paths and not args.instance:
        print("rishub: send: give PATH... and/or --instance ID", file=sys.stderr)
        return 2
    hub = None
    if args.instance:
        from hub.app import Hub
        from interfaces.dimse.scu import remote_service

        hub = Hub.open(settings, bootstrap_admin=False)
        service = remote_service(hub)
    else:
        service = _service(settings)

    def run() -> int:
        report = service.store(args.name, args.paths, args.instance)
        for item in report.items:
            if not item.ok:
                print(f"  FAILED {item.label}: {item.error}", file=sys.stderr)
            elif item.error:
                print(f"  {item.label}: {item.error}", file=sys.stderr)
        line = (f"sent {report.sent}, failed {report.failed} to {args.name} "
                f"({report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s)")
        print(line if report.ok else f"rishub: {line}", file=sys.stdout if report.ok else sys.stderr)
        return 0 if report.ok else 1

    try:
        return _run(f"send {args.name}", run)
    finally:
        if hub is not None:
            hub.close()
