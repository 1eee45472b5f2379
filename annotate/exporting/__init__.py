"""Dataset snapshots: immutable exports of a project in the BeaverTails, PKU-SafeRLHF and raw formats.

`snapshot_create(project=..., user=..., format=...)` records the request and queues the build;
`snapshot_build(snapshot=...)` (the Celery task's body) writes the files. See docs/exports.md.
"""

from annotate.exporting.services import SnapshotRefused, snapshot_build, snapshot_create

__all__ = ["SnapshotRefused", "snapshot_build", "snapshot_create"]
