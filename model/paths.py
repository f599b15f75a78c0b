"""Where the engine finds its data when nobody says otherwise."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "training_data"
MODEL_DIR = PROJECT_ROOT / "build" / "model"


def knowledge_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "knowledge"


def samples_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "samples"
