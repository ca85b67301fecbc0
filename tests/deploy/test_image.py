"""docker/: the Dockerfile parses, installs the pinned stack of pyproject.toml, runs as non-root, holds no secret."""

import pathlib
import re
import tomllib

from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from tests.helpers import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
CONSTRAINTS = REPO / "docker" / "constraints.txt"


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


def test_dockerignore_keeps_the_context_small_and_secret_free():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", "runs", "wandb", ".env", "**/auth_token"):
        assert entry in ignored


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
