"""Shared start-up for the benchmarks: Django on its own embedded data folder, migrated."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"


def setup_django(var_name: str, **env: str) -> Path:
    """Start Django with VAR_DIR=var/<var_name> so a benchmark never touches real data."""
    sys.path.insert(0, str(ROOT))
    var_dir = ROOT / "var" / var_name
    os.environ.setdefault("VAR_DIR", str(var_dir))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for key, value in env.items():
        os.environ.setdefault(key, value)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return Path(os.environ["VAR_DIR"])
