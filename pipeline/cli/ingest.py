"""Commands: TODO."""

from __future__ import annotations

import click

from pipeline.cli import cli
from pipeline.config import Paths
