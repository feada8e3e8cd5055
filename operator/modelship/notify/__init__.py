"""Notifications, the shell: queue, send and retry them off the reconcile path.

`delivery.Notifier` takes the notifications the core derived from a pass's posted Events
(`modelship.core.notifications`), queues each for every target that wants it, and sends them
from one worker thread per target (`webhook.post`), so a target that is down or hangs delays
only its own notifications, never a rollout. Outcomes are counted in
`modelship_notifications_total` and reported back to the reconciler as an observation, which
the engine shows as the `NotificationsDelivered` condition. A webhook URL is a credential: it
is read from its Secret just before each attempt and never logged.
"""
