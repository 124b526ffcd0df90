"""The container image definition, checked statically (no Docker engine runs here): a pinned base image, a
non-root user, the package installed from constraints.txt, no secret baked in, the code server as the
default command, and a build context that cannot carry local secrets (.venv, .dfx, key files)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib

import pytest

from dfx_pipelines.platform import environment
from dfx_pipelines_tests.deploy import chart

REPO = chart.REPO
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# Names a secret travels under; none may be set, declared or copied in the image definition.
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "MASTER_KEY", "PRIVATE", "CREDENTIAL", "WEBHOOK", "DB_URL", "API_KEY")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def env_names(arguments: str) -> list[str]:
    """The variables an ENV instruction sets (`ENV A=1 B=2`, or the legacy `ENV A 1`)."""
    if "=" not in arguments.split()[0]:
        return [arguments.split()[0]]
    return [token.split("=", 1)[0] for token in shlex.split(arguments)]


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), f"not the exec (JSON array) form: {arguments}"
    return parsed


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parent folders wins,
    and `!` re-includes. `**` matches any number of folders."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        glob = glob.rstrip("/")
        regex = fnmatch.translate(glob).replace(".*.*/", "(?:.*/)?")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            result = not negate
    return result


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_every_base_image_is_pinned_to_an_exact_python_311_release(steps: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    assert bases, "no FROM"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires
    for base in bases:
        # An exact patch tag (python:3.11.N-variant), optionally with its digest; never latest or a moving 3.11.
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


def test_the_image_runs_as_a_fixed_non_root_uid_that_the_pod_enforces(steps: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    final_user = users[-1].split(":")[0]
    assert final_user.isdigit() and int(final_user) != 0, (
        "a numeric non-root uid (runAsNonRoot can only verify a number)"
    )
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    assert any(keyword == "USER" for keyword, _ in steps[last_from:]), "USER must be set in the final stage"
    pod = chart.deployment(chart.load_values())["podSecurityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == int(final_user)


def test_the_package_is_installed_from_the_constraints_with_the_k8s_extra(steps: list[tuple[str, str]]) -> None:
    installs = [args for keyword, args in steps if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 1, installs
    command = installs[0]
    assert "-c constraints.txt" in command and '".[k8s]"' in command
    assert " -e " not in command, "an editable install would need the source tree at run time"
    copied = " ".join(args for keyword, args in steps if keyword == "COPY")
    assert "constraints.txt" in copied and "pyproject.toml" in copied
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["k8s"] == ["dagster-k8s==0.29.27"]
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    assert "dagster-k8s==0.29.27" in constraints and "dagster==1.13.27" in constraints


def test_no_secret_is_set_declared_or_copied_in_the_image(steps: list[tuple[str, str]]) -> None:
    for keyword, args in steps:
        if keyword == "ENV":
            names = env_names(args)
        elif keyword == "ARG":
            names = [args.split("=")[0].split()[0]]
        else:
            names = []
        for name in names:
            assert not any(word in name.upper() for word in SECRET_WORDS), f"{keyword} {name} bakes a secret in"
        if keyword in ("COPY", "ADD"):
            sources = [token for token in args.split() if not token.startswith("--")][:-1]
            for source in sources:
                assert not re.search(r"\.dfx|\.venv|key|\.pem|\.env|secret|credential", source, re.I), source
            assert args.split()[-1] != "." or "." not in sources, "COPY . . would copy whatever the context holds"
        if keyword == "RUN":
            assert "--mount=type=secret" not in args and "DFX_MASTER_KEY" not in args


def test_the_image_sets_only_variables_the_code_reads_and_starts_in_production_mode(
    steps: list[tuple[str, str]],
) -> None:
    set_by_image: dict[str, str] = {}
    for keyword, args in steps:
        if keyword == "ENV":
            set_by_image.update(dict(token.split("=", 1) for token in shlex.split(args)))
    ours = {name for name in set_by_image if name.startswith(("DFX_", "DAGSTER_"))}
    assert ours <= set(environment.BY_NAME), sorted(ours - set(environment.BY_NAME))
    assert set_by_image["DFX_MODE"] == "production"  # no embedded default can start from this image
    assert set_by_image["DAGSTER_HOME"] == chart.DAGSTER_HOME  # where the chart mounts the instance config


def test_the_default_command_serves_the_code_location_the_chart_deploys(steps: list[tuple[str, str]]) -> None:
    (command,) = [exec_form(args) for keyword, args in steps if keyword == "CMD"]
    assert command[:3] == ["dagster", "code-server", "start"] or command[:3] == ["dagster", "api", "grpc"]
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert command[command.index("-m") + 1] == module
    deployed = chart.deployment(chart.load_values())
    assert deployed["codeServerArgs"] == ["-m", module]
    assert command[command.index("-p") + 1] == str(deployed["port"])
    assert not [args for keyword, args in steps if keyword == "ENTRYPOINT"], (
        "the chart passes its command as container args: an ENTRYPOINT would be prepended to them"
    )


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".dfx/master.key",
        ".dfx/vault/datakeys/acme/sf-acme.json",
        ".dfx/sandbox/bigquery-key.json",
        "key.json",
        "sa-key.json",
        "secrets/prod.pem",
        ".env",
        ".env.production",
        ".git/config",
        "dfx_pipelines_tests/fixtures/anything.json",
        "bench/results.txt",
        "dfx_pipelines/.dfx/master.key",
        "dfx_pipelines/platform/__pycache__/vault.cpython-311.pyc",
        "dfx_pipelines/connectors/service-account-key.json",
        "dfx_pipelines/tls/server.key",
    ],
)
def test_the_build_context_excludes_local_state_and_key_files(ignore_patterns: list[str], path: str) -> None:
    assert ignored(path, ignore_patterns), f"{path} would be sent to the build"


def test_the_build_context_holds_everything_the_image_copies(
    steps: list[tuple[str, str]], ignore_patterns: list[str]
) -> None:
    sources = [
        token
        for keyword, args in steps
        if keyword == "COPY" and "--from=" not in args
        for token in args.split()[:-1]
        if not token.startswith("--")
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        files = (
            [source] if (REPO / source).is_file() else [str(p.relative_to(REPO)) for p in (REPO / source).rglob("*.py")]
        )
        kept = [f for f in files if not ignored(f, ignore_patterns)]
        assert kept, f"{source} is excluded from the build context"
        if (REPO / source).is_dir():
            assert len(kept) == len([f for f in files if "__pycache__" not in f]), f"part of {source} is excluded"
