"""``python -m vecface.cli ...``: the same as the ``vecface`` command."""

from . import run

run()
