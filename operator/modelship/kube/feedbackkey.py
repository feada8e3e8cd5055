"""The Secret holding the key a ModelDeployment's pods share to sign feedback tokens.

Created once per ModelDeployment with a random key, owned by it (deleted with it), and never read
back: the operator needs only `create` on Secrets, not `get`. Pods mount it as FEEDBACK_KEY
(optional, so a cluster that forbids the create still serves, without tokens).
"""

from __future__ import annotations

import secrets
import threading

from modelship.core import manifests
from modelship.kube.storage import Conflict, Forbidden, Storage, secrets_path
from modelship.logs import Logger

KEY_BYTES = 32


class FeedbackKeys:
    """Remembers which ModelDeployments (by uid) have their key, so a pass costs no API call."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._done: set[str] = set()
        self._guard = threading.Lock()

    def ensure(self, owner: manifests.Owner, logger: Logger) -> None:
        with self._guard:
            if owner.uid in self._done:
                return
        name = manifests.feedback_key_secret(owner.name)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": owner.namespace,
                "labels": {**manifests.MANAGED_BY, manifests.MODEL_LABEL: owner.name},
                "ownerReferences": [manifests.owner_reference(owner)],
            },
            "type": "Opaque",
            "stringData": {manifests.FEEDBACK_KEY_SECRET_KEY: secrets.token_hex(KEY_BYTES)},
        }
        try:
            self.storage.create(secrets_path(owner.namespace), secret)
        except Conflict:
            pass  # made by an earlier pass or operator instance
        except Forbidden as err:
            logger.warning(
                "cannot create Secret %s (%s): feedback must reach the replica that answered "
                "(grant `create` on secrets; docs/serving.md)",
                name,
                err,
            )
        with self._guard:
            self._done.add(owner.uid)
