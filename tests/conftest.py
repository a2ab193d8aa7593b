from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
# ../shared beside the checkout: reference data that must not be copied into the project.
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared reference data is not present")
    return SHARED
