#!/usr/bin/python3
"""Finish the deletion of Cinder volumes, as cinder-volume would.

Usage: cinder-finish-delete.py STATE_DIR VOLUME_ID...

The test stack runs cinder-api alone (start.sh: no scheduler, no
cinder-volume). cinder-api deletes a volume without a host itself, quota
included, but only marks one with a host (a test wrote it, to snapshot it)
"deleting" and casts the rest to cinder-volume, which is not there: the
volume, its snapshots and their quota would stay forever, and repeated
runs on one stack exhaust the project's quota. For each volume that the
API has marked "deleting", this does cinder-volume's part with Cinder's
own code: each snapshot, then the volume, is destroyed and its quota
(snapshots or volumes, and gigabytes, per volume type too) given back.
A volume that is gone already is skipped; one in any other state is an
error (delete it through the API first).
"""
import sys

from oslo_config import cfg

from cinder.common import config  # noqa: F401 (registers the options)
from cinder import context
from cinder import exception
from cinder import objects
from cinder import quota


def give_back(ctx, project_id, type_id, **deltas):
    """Reserves the negative deltas (per volume type too); commit them."""
    opts = dict(deltas)
    quota.QUOTAS.add_volume_type_opts(ctx, opts, type_id)
    return quota.QUOTAS.reserve(ctx, project_id=project_id, **opts)


def main(state, ids):
    cfg.CONF([], project='cinder', default_config_files=[state + '/cinder/etc/cinder.conf'])
    objects.register_all()
    ctx = context.get_admin_context()
    failed = False
    for vid in ids:
        try:
            vol = objects.Volume.get_by_id(ctx, vid)
        except exception.VolumeNotFound:
            continue
        if vol.status != 'deleting':
            print(f'volume {vid} is {vol.status}, not deleting: delete it through the API first', file=sys.stderr)
            failed = True
            continue
        for snap in objects.SnapshotList.get_all_for_volume(ctx, vid):
            res = give_back(ctx, snap.project_id, snap.volume_type_id, snapshots=-1, gigabytes=-snap.volume_size)
            snap.destroy()
            quota.QUOTAS.commit(ctx, res, project_id=snap.project_id)
        res = give_back(ctx, vol.project_id, vol.volume_type_id, volumes=-1, gigabytes=-vol.size)
        vol.destroy()
        quota.QUOTAS.commit(ctx, res, project_id=vol.project_id)
    return 1 if failed else 0


if __name__ == '__main__':
    if len(sys.argv) < 3:
        print(__doc__.split('\n\n')[1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
