"""Run by Python at start-up when this directory is on PYTHONPATH: the fault suite starts an
operator it may crash after a chosen write this way (localworld.crashpoint)."""

import os

if os.environ.get("MODELSHIP_CRASHPOINT"):
    from localworld import crashpoint

    crashpoint.install_from_env()
