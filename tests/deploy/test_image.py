"""docker/: the Dockerfile parses, installs the pinned stack of pyproject.toml, runs as non-root, holds no secret.

No Docker engine runs here, so what the Dockerfile assumes about its base images is written down below
(:data:`BASE_IMAGES`, each fact with its source) and its steps are checked against it: the user step runs
under ``sh`` with stand-ins of the account tools over each base's ``/etc/passwd`` (fake_account_tools.py).
"""

import dataclasses
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.helpers import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
CONSTRAINTS = REPO / "docker" / "constraints.txt"


@dataclasses.dataclass(frozen=True)
class BaseImage:
    """What the Dockerfile relies on in a base image, and where each fact comes from."""

    passwd: tuple[str, ...]  # /etc/passwd
    group: tuple[str, ...]  # /etc/group (the entries of the accounts above)
    homes: tuple[str, ...]  # home directories that exist
    python3: str  # the distribution's python3 (major.minor), which the image must not use
    source: str


UBUNTU_2404 = BaseImage(
    passwd=(
        "root:x:0:0:root:/root:/bin/bash",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
        "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash",
    ),
    group=("root:x:0:", "nogroup:x:65534:", "ubuntu:x:1000:"),
    homes=("/root", "/home/ubuntu"),
    python3="3.12",
    source=(
        "/etc/passwd of ubuntu:24.04 (`docker run --rm ubuntu:24.04 getent passwd 1000` prints "
        "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash; quoted in jupyterhub/repo2docker#1346 and "
        "bagisto/bagisto-docker#36; the user came with Launchpad cloud-images bug 2005129, Ubuntu 23.04+); "
        "noble's python3 is 3.12.3 (packages.ubuntu.com/noble/python3)"
    ),
)

#: Every base image the Dockerfile is built on (its default and the CPU head of its header and the README).
BASE_IMAGES = {
    "ubuntu:24.04": UBUNTU_2404,
    # NVIDIA builds its CUDA images FROM ubuntu:24.04 (gitlab.com/nvidia/container-images/cuda,
    # dist/12.8.1/ubuntu2404/base/Dockerfile); the runtime and cudnn layers add packages, not users.
    "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04": UBUNTU_2404,
}

#: A base with uid 1000 free (ubuntu:22.04 has no `ubuntu` user: same sources), for the step's other branch.
UID_1000_FREE = BaseImage(
    passwd=("root:x:0:0:root:/root:/bin/bash", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"),
    group=("root:x:0:", "nogroup:x:65534:"),
    homes=("/root",),
    python3="3.10",
    source="/etc/passwd of ubuntu:22.04",
)

#: The Python minor version the stack is verified with: the one ruff targets and the tests run on.
VERIFIED_PYTHON = "3.11"


def _parsed():
    parser = DockerfileParser(path=str(DOCKERFILE))
    return parser, [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]


def _pins():
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt must pin exact versions: {line}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def _dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(d) for d in project["dependencies"]]


def test_dockerfile_parses_into_the_expected_stages():
    parser, instructions = _parsed()
    names = [name for name, _ in instructions]
    assert names[0] == "ARG" and "FROM" in names
    assert ("FROM", "${BASE_IMAGE}") in instructions
    assert re.search(r"^nvidia/cuda:[\d.]+-cudnn-runtime", parser.baseimage)  # a CUDA base by default
    users = [value for name, value in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, (name, _) in enumerate(instructions) if name == "USER")
    assert last_user < names.index("CMD")


def _final_stage():
    """``(instruction, value, user)`` of every step of the final stage, with the user it runs as."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    last_from = max(i["startline"] for i in parser.structure if i["instruction"] == "FROM")
    steps, user = [], "root"
    for item in parser.structure:
        if item["startline"] <= last_from or item["instruction"] == "COMMENT":
            continue
        if item["instruction"] == "USER":
            user = item["value"]
        steps.append((item["instruction"], item["value"], user))
    return steps


def _user_step() -> str:
    (step,) = [value for name, value, _ in _final_stage() if name == "RUN" and "RAY_UID" in value]
    return step


def _run_as_root_on(base: BaseImage, script: str, tmp_path: pathlib.Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``script`` under ``sh -c`` (as Docker runs RUN) with the account tools acting on ``base``'s files."""
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("".join(f"{line}\n" for line in base.passwd))
    (root / "etc" / "group").write_text("".join(f"{line}\n" for line in base.group))
    for home in base.homes:
        (root / home.lstrip("/")).mkdir(parents=True)
    tools, stand_in = tmp_path / "bin", pathlib.Path(__file__).with_name("fake_account_tools.py")
    tools.mkdir()
    for name in ("getent", "id", "useradd", "usermod", "groupmod", "install"):
        wrapper = tools / name
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(stand_in))} {name} "$@"\n')
        wrapper.chmod(0o755)
    env = {"PATH": f"{tools}:{os.environ['PATH']}", "FAKE_ROOT": str(root), **_parsed()[0].args}
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    passwd = {r[0]: r for r in (line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines())}
    groups = {r[0]: r for r in (line.split(":") for line in (root / "etc" / "group").read_text().splitlines())}
    owners = json.loads((root / "owners.json").read_text()) if (root / "owners.json").exists() else {}
    return result, {"passwd": passwd, "group": groups, "owners": owners, "root": root}


def test_every_base_image_has_its_facts_written_down():
    parser, _ = _parsed()
    bases = {parser.baseimage}
    for text in (DOCKERFILE.read_text(), (REPO / "README.md").read_text()):
        bases |= set(re.findall(r"--build-arg BASE_IMAGE=(\S+)", text))
    assert bases == set(BASE_IMAGES), f"write down the users and Python of {bases - set(BASE_IMAGES)}"


def test_the_stand_ins_refuse_a_taken_uid_as_useradd_does(tmp_path):
    # The step the image had: it never built on Ubuntu 24.04, whose `ubuntu` user holds uid 1000.
    result, _ = _run_as_root_on(UBUNTU_2404, "useradd --create-home --uid 1000 --shell /bin/bash ray", tmp_path)
    assert result.returncode == 4 and "UID 1000 is not unique" in result.stderr


@pytest.mark.parametrize("base", [UBUNTU_2404, UID_1000_FREE], ids=["uid-1000-taken", "uid-1000-free"])
def test_the_user_step_gives_ray_its_uid_home_and_directories(tmp_path, base):
    result, image = _run_as_root_on(base, _user_step(), tmp_path)
    assert result.returncode == 0, result.stderr
    uid = _parsed()[0].args["RAY_UID"]
    ray = image["passwd"]["ray"]
    assert ray[2] == uid and ray[5] == "/home/ray" and ray[6] == "/bin/bash"
    assert image["group"]["ray"][2] == ray[3]  # its own group
    assert [name for name, row in image["passwd"].items() if row[2] == uid] == ["ray"]
    assert (image["root"] / "home" / "ray").is_dir()
    if "ubuntu" in (line.split(":")[0] for line in base.passwd):
        assert not (image["root"] / "home" / "ubuntu").exists()  # moved, not left behind
    assert image["owners"] == {"/home/ray": "ray:ray", "/opt/venv": "ray:ray", "/opt/xdrl": "ray:ray"}


def _written_paths(instruction: str, value: str, env: dict[str, str]) -> list[str]:
    """The absolute paths a step of user `ray` writes: its WORKDIR, COPY destination, the paths its RUN names."""
    if instruction == "WORKDIR":
        return [value]
    if instruction == "COPY":
        return [value.split()[-1]]
    if instruction == "RUN":
        # pip installs into the virtualenv; any absolute path the command names is read or written there.
        paths = re.findall(r"(?<![\w:/$.-])(/[\w.-]+(?:/[\w.-]+)*)", value)
        return [*paths, *([env["VIRTUAL_ENV"]] if re.search(r"\bpip install\b", value) else [])]
    return []


def test_every_path_the_image_writes_as_ray_is_owned_by_ray(tmp_path):
    _, image = _run_as_root_on(UBUNTU_2404, _user_step(), tmp_path)
    owned = [path for path, owner in image["owners"].items() if owner == "ray:ray"]
    steps = _final_stage()
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(v for n, v, _ in steps if n == "ENV")))
    assert [user for name, user, _ in steps if name == "USER"] == ["ray"]
    for instruction, value, user in steps:
        if user != "ray":
            continue
        if instruction == "COPY":
            assert value.startswith("--chown=ray:ray "), f"COPY as ray without --chown=ray:ray: {value}"
        for path in _written_paths(instruction, value, env):
            assert any(path == o or path.startswith(o.rstrip("/") + "/") for o in owned), (
                f"{instruction} {value!r} writes {path}, not below a directory of ray ({owned})"
            )
    # A root step that fills a directory of ray hands what it made back to ray.
    user_step = _user_step()
    for instruction, value, user in steps:
        if instruction == "RUN" and user == "root" and value != user_step:
            for path in owned:
                if re.search(rf"{re.escape(path)}\b", value):
                    assert f"chown -R ray:ray {path}" in value, f"root writes {path} and leaves it root's: {value}"
    assert steps[-1][0] == "CMD" and [v for n, v, _ in steps if n == "WORKDIR"][-1] == image["passwd"]["ray"][5]


def test_the_image_python_is_the_verified_one_not_the_bases():
    parser, _ = _parsed()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert parser.args["PYTHON_VERSION"] == VERIFIED_PYTHON
    assert project["tool"]["ruff"]["target-version"] == "py" + VERIFIED_PYTHON.replace(".", "")
    assert SpecifierSet(project["project"]["requires-python"]).contains(VERIFIED_PYTHON + ".0")
    assert all(base.python3 != VERIFIED_PYTHON for base in BASE_IMAGES.values())  # so the base's python3 is no use
    runs = [v for n, v, _ in _final_stage() if n == "RUN"]
    apt = " ".join(r for r in runs if "apt-get install" in r)
    assert not re.search(r"\bpython3(\.\d+)?(-\w+)?\b", apt), "the distribution's python3 is not the verified one"
    (venv_step,) = [r for r in runs if "-m venv /opt/venv" in r]
    assert 'uv python install --no-bin "${PYTHON_VERSION}"' in venv_step
    assert '"$(uv python find --managed-python "${PYTHON_VERSION}")" -m venv /opt/venv' in venv_step
    assert '= "${PYTHON_VERSION}"' in venv_step  # the build stops if the virtualenv has another version
    uv_version = _global_args()["UV_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", uv_version)  # a pinned uv release fixes the patch version
    assert parser.parent_images[0] == f"ghcr.io/astral-sh/uv:{uv_version}"


def _global_args() -> dict[str, str]:
    """ARGs before the first FROM (dockerfile-parse reports the final stage's)."""
    text = DOCKERFILE.read_text()
    head = text[: text.index("\nFROM ")]
    return dict(re.findall(r"^ARG (\w+)=(\S+)", head, re.M))


def test_install_step_uses_the_pins_of_pyproject():
    parser, instructions = _parsed()
    runs = " ".join(value for name, value in instructions if name == "RUN")
    assert "-c docker/constraints.txt" in runs
    pins = _pins()
    torch_version = parser.args["TORCH_VERSION"]
    for requirement in _dependencies():
        name = requirement.name.lower()
        version = torch_version if name == "torch" else pins.get(name)
        assert version is not None, f"{name} is a dependency of pyproject.toml but has no pin in constraints.txt"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} (image) is outside pyproject.toml's {requirement.specifier}"
        )
        if name != "torch":
            assert re.search(rf"\b{re.escape(requirement.name)}\b", runs, re.IGNORECASE), f"{name} not installed"
    assert "torch" not in pins  # installed from the CUDA index with TORCH_VERSION


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern decides, ``!`` re-includes; a match on a parent counts."""

    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            else:
                out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        return re.compile(out + "$")

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        if any(regex(pattern).match(c) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small_and_secret_free():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    secrets = [
        ".env", "docker/.env", ".env.local", "cluster/id_rsa", "key.pem", "docker/tls/server.key", "x.p12",
        "home/.ray/auth_token", "auth_token", ".netrc", "docker/.netrc", ".pypirc", ".git-credentials",
        ".aws/credentials", ".ray/auth_token", "kubeconfig", "cluster/prod.kubeconfig", ".docker/config.json",
    ]  # fmt: skip
    assert [s for s in secrets if not _dockerignored(s, patterns)] == []
    for bulky in (".git/HEAD", ".venv/bin/python", "runs/tune/x", "wandb/run-1", "tests/test_x.py", "a/b.pt"):
        assert _dockerignored(bulky, patterns), bulky
    needed = [
        "pyproject.toml",
        "README.md",
        "docker/constraints.txt",
        "xdrl/cli.py",
        "xdrl/configs",
        "configs/config.yaml",
    ]
    assert [n for n in needed if _dockerignored(n, patterns)] == []


SECRET_PATTERNS = [
    re.compile(r"\b[0-9a-f]{40}\b"),  # a W&B API key
    re.compile(r"AKIA[0-9A-Z]{16}"),  # an AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)\b(api[_-]?key|auth[_-]?token|secret|password)\b\s*[:=]\s*['\"]?(?!\$)[A-Za-z0-9_\-/+]{12,}"),
    re.compile(r"(?i)WANDB_API_KEY\s*[:=]\s*['\"]?[A-Za-z0-9]{12,}"),
]


def test_no_key_like_string_in_deployment_and_config_files():
    offenders = []
    for folder in ("cluster", "docker", "configs"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file():
                text = path.read_text(errors="replace")
                offenders += [
                    f"{path.relative_to(REPO)}: {m.group(0)}" for p in SECRET_PATTERNS for m in p.finditer(text)
                ]
    assert offenders == []


def test_secret_scan_catches_a_planted_key(tmp_path):
    planted = "WANDB_API_KEY=" + "0123456789abcdef" * 2 + "01234567"
    assert any(p.search(planted) for p in SECRET_PATTERNS)
    assert not any(p.search("secretKeyRef: {name: xdrl-secrets, key: wandb-api-key}") for p in SECRET_PATTERNS)
    assert pathlib.Path(CONSTRAINTS).exists()
