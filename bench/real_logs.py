"""The real robot logs the benchmarks replay: name -> bag directory in ../shared/data/real/."""

from pathlib import Path

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_LOGS = {name: REAL_DIR / name for name in ("mit-csail", "fr079")}
