"""scripts/module_cycles.py: a cycle between two modules fails `make lint`; tests do not count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "module_cycles.py"


def run(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src)], capture_output=True, text=True, check=False
    )


def crate(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


def test_a_cycle_between_two_modules_fails_and_is_named(tmp_path: Path) -> None:
    src = crate(
        tmp_path,
        {
            "lib.rs": "mod config;\nmod kafka;\n",
            "config.rs": "use crate::kafka::Topics;\n",
            "kafka/mod.rs": "use crate::{Result, config::Settings};\n",
        },
    )
    done = run(src)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cycle config → kafka → config" in done.stderr


def test_one_way_edges_and_test_only_imports_pass(tmp_path: Path) -> None:
    src = crate(
        tmp_path,
        {
            "lib.rs": "mod config;\nmod kafka;\n",
            "config.rs": "use crate::kafka::KafkaSettings;\n",
            "kafka/mod.rs": "pub struct KafkaSettings;\n#[cfg(test)]\nmod tests {\n"
            "    use crate::config::Settings;\n}\n",
            "kafka/tests.rs": "use crate::config::Settings;\n",
        },
    )
    done = run(src)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "config → kafka" in done.stdout
    assert "kafka → ∅" in done.stdout


def test_the_project_s_crates_have_no_cycle() -> None:
    root = SCRIPT.parents[1]
    sources = sorted(str(p) for p in (root / "crates").glob("*/src"))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *sources], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("module-cycles:") == len(sources)
