"""Stand-ins for getent, id, useradd, usermod, groupmod and install over a directory standing for an image root.

The user step of docker/Dockerfile runs as root in a container; here it runs under ``sh`` with these
tools first on ``PATH``, against the ``/etc/passwd`` and ``/etc/group`` of a base image written down
in tests/deploy/test_image.py. Only the options the Dockerfile uses are understood (anything else
fails loudly), with the exit codes of shadow-utils for the conflicts that matter: useradd exits 4
for a uid in use and 9 for a name in use.

Invoked as ``python fake_account_tools.py TOOL ARGS...`` (a wrapper named TOOL on ``PATH`` does it);
``FAKE_ROOT`` is the image root.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys


def _root() -> pathlib.Path:
    return pathlib.Path(os.environ["FAKE_ROOT"])


def _passwd() -> pathlib.Path:
    return _root() / "etc" / "passwd"


def _group() -> pathlib.Path:
    return _root() / "etc" / "group"


def _table(path: pathlib.Path) -> list[list[str]]:
    return [line.split(":") for line in path.read_text().splitlines() if line]


def _write(path: pathlib.Path, rows: list[list[str]]) -> None:
    path.write_text("".join(":".join(r) + "\n" for r in rows))


def _fail(code: int, message: str) -> None:
    print(f"{sys.argv[1]}: {message}", file=sys.stderr)
    sys.exit(code)


def _options(argv: list[str], flags: set[str], valued: set[str]) -> tuple[dict[str, str | bool], list[str]]:
    options: dict[str, str | bool] = {}
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in flags:
            options[arg] = True
        elif arg in valued:
            options[arg] = next(it)
        elif arg.startswith("-"):
            _fail(2, f"option {arg} is not understood by this stand-in")
        else:
            rest.append(arg)
    return options, rest


def _user(key: str) -> list[str] | None:
    return next((r for r in _table(_passwd()) if key in (r[0], r[2])), None)


def getent(argv: list[str]) -> None:
    database, key = argv
    rows = _table(_passwd() if database == "passwd" else _group())
    row = next((r for r in rows if key in (r[0], r[2])), None)
    if row is None:
        sys.exit(2)
    print(":".join(row))


def id_(argv: list[str]) -> None:
    option, name = argv
    user = _user(name)
    if user is None:
        _fail(1, f"'{name}': no such user")
    group = next(r for r in _table(_group()) if r[2] == user[3])
    print({"-u": user[2], "-g": user[3], "-gn": group[0]}[option])


def useradd(argv: list[str]) -> None:
    options, (name,) = _options(argv, {"--create-home", "--user-group"}, {"--uid", "--shell"})
    uid = str(options["--uid"])
    if _user(uid) is not None:
        _fail(4, f"UID {uid} is not unique")
    groups = _table(_group())
    if _user(name) is not None or any(g[0] == name for g in groups):
        _fail(9, f"user '{name}' already exists")
    gid = uid if not any(g[2] == uid for g in groups) else str(max(int(g[2]) for g in groups) + 1)
    _write(_group(), [*groups, [name, "x", gid, ""]])
    home = f"/home/{name}"
    _write(_passwd(), [*_table(_passwd()), [name, "x", uid, gid, "", home, str(options.get("--shell", "/bin/sh"))]])
    if options.get("--create-home"):
        (_root() / home.lstrip("/")).mkdir(parents=True)


def usermod(argv: list[str]) -> None:
    options, (name,) = _options(argv, {"--move-home"}, {"--login", "--home", "--shell"})
    rows = _table(_passwd())
    row = next((r for r in rows if r[0] == name), None)
    if row is None:
        _fail(6, f"user '{name}' does not exist")
    new_name = str(options.get("--login", name))
    if new_name != name and any(r[0] == new_name for r in rows):
        _fail(9, f"user '{new_name}' already exists")
    new_home = str(options.get("--home", row[5]))
    if options.get("--move-home") and new_home != row[5]:
        old, new = _root() / row[5].lstrip("/"), _root() / new_home.lstrip("/")
        if new.exists():
            _fail(12, f"directory {new_home} exists")
        if old.exists():
            old.rename(new)
    row[0], row[5], row[6] = new_name, new_home, str(options.get("--shell", row[6]))
    _write(_passwd(), rows)


def groupmod(argv: list[str]) -> None:
    options, (name,) = _options(argv, set(), {"--new-name"})
    rows = _table(_group())
    row = next((r for r in rows if r[0] == name), None)
    if row is None:
        _fail(6, f"group '{name}' does not exist")
    if any(r[0] == options["--new-name"] for r in rows):
        _fail(9, f"group '{options['--new-name']}' already exists")
    row[0] = str(options["--new-name"])
    _write(_group(), rows)


def install(argv: list[str]) -> None:
    options, directories = _options(argv, {"-d"}, {"-o", "-g"})
    if not options.get("-d"):
        _fail(2, "only install -d is understood by this stand-in")
    if "-o" in options and _user(str(options["-o"])) is None:
        _fail(1, f"invalid user '{options['-o']}'")
    if "-g" in options and not any(r[0] == options["-g"] for r in _table(_group())):
        _fail(1, f"invalid group '{options['-g']}'")
    # Ownership is recorded in owners.json (the stand-in does not chown).
    record = _root() / "owners.json"
    owners = json.loads(record.read_text()) if record.exists() else {}
    for directory in directories:
        (_root() / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        owners[directory] = f"{options.get('-o', 'root')}:{options.get('-g', 'root')}"
    record.write_text(json.dumps(owners))


TOOLS = {"getent": getent, "id": id_, "useradd": useradd, "usermod": usermod, "groupmod": groupmod, "install": install}

if __name__ == "__main__":
    TOOLS[sys.argv[1]](sys.argv[2:])
