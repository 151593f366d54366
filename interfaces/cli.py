"""``rishub`` command line: serve | import | db upgrade | db current | user add | user list."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence

from hub import __version__
from hub.settings import Settings, SettingsError, load


def _settings(args: argparse.Namespace) -> Settings:
    return load(args.config)


def _logging(settings: Settings, quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else getattr(logging, settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def cmd_serve(args: argparse.Namespace) -> int:
    from hub.app import Hub, SchemaOutOfDate
    from interfaces.serve import serve

    settings = _settings(args)
    _logging(settings)
    try:
        hub = Hub.open(settings)
    except SchemaOutOfDate as exc:
        print(f"rishub: {exc}", file=sys.stderr)
        return 2
    if hub.generated_admin_password:
        print(
            f"rishub: created user 'admin' with password {hub.generated_admin_password} "
            f"(saved 0600 in {settings.data_path / 'admin-password.txt'}; shown once)",
            flush=True,
        )
    try:
        serve(hub)
    except OSError as exc:
        print(f"rishub: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from hub.app import Hub
    from hub.services.importer import import_paths

    settings = _settings(args)
    _logging(settings, quiet=True)
    hub = Hub.open(settings, bootstrap_admin=False)
    try:
        report = import_paths(
            hub.ingest, args.paths, workers=args.workers or settings.storage.import_workers,
            progress=not args.no_progress, user=getpass.getuser(),
        )
    finally:
        hub.close()
    print(
        f"stored {report.stored}, duplicates {report.duplicates}, rejected {report.rejected}, "
        f"failed {report.failed} ({report.files} files, {report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s)"
    )
    for path, reason in report.rejections[: args.show_rejected]:
        print(f"  rejected {path}: {reason}", file=sys.stderr)
    for path, reason in report.failures[:20]:
        print(f"  FAILED {path}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from hub.app import upgrade_schema

    print(f"schema at {upgrade_schema(_settings(args), args.revision)}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from hub.app import head_revision, schema_revision

    print(f"current {schema_revision(_settings(args))}, head {head_revision()}")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from hub.app import Hub

    settings = _settings(args)
    hub = Hub.open(settings, bootstrap_admin=False)
    try:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = os.environ.get("RISHUB_NEW_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
        if len(password) < 8:
            print("rishub: password must have at least 8 characters", file=sys.stderr)
            return 2
        try:
            created = hub.auth.set_password(args.name, password, tuple(args.role or ["user"]))
        except ValueError as exc:
            print(f"rishub: {exc}", file=sys.stderr)
            return 2
    finally:
        hub.close()
    print(f"{'created' if created else 'updated'} user {args.name}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from hub.app import Hub

    hub = Hub.open(_settings(args), bootstrap_admin=False)
    try:
        for user in hub.users.list():
            print(f"{user.username}\t{','.join(user.roles)}")
    finally:
        hub.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rishub", description="RIS-PACS interoperability hub")
    parser.add_argument("--version", action="version", version=f"rishub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", metavar="FILE", help="TOML file with the settings it changes")
        return p

    p = with_config(sub.add_parser("serve", help="start every listener"))
    p.set_defaults(func=cmd_serve)

    p = with_config(sub.add_parser("import", help="store DICOM files/folders through the ingest path"))
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--workers", "-j", type=int, default=0, help="parallel workers (default 2 x CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--show-rejected", type=int, default=20, metavar="N", help="list up to N rejected files")
    p.set_defaults(func=cmd_import)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    p = with_config(db.add_parser("upgrade", help="apply Alembic migrations"))
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db_upgrade)
    p = with_config(db.add_parser("current", help="show the schema revision"))
    p.set_defaults(func=cmd_db_current)

    user = sub.add_parser("user", help="HTTP users").add_subparsers(dest="user_command", required=True)
    p = with_config(user.add_parser("add", help="create or update a user"))
    p.add_argument("name")
    p.add_argument("--role", action="append", choices=["admin", "user", "uploader"])
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_user_add)
    p = with_config(user.add_parser("list", help="list users"))
    p.set_defaults(func=cmd_user_list)

    from interfaces.cli_dicom import register as register_dicom

    register_dicom(sub, with_config)
    from interfaces.cli_map import register as register_map

    register_map(sub, with_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"rishub: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, no traceback, for operators (details at DEBUG)
        logging.getLogger("rishub").debug("command failed", exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"rishub: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
