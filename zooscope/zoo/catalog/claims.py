"""Row claims of concurrent writers: who computes which (kind, model, dataset) pair, under a lease.

Concurrent writers: row claims. Several `Zoo.embed` processes (or machines) may write one catalog. Before
computing a pair, a writer *claims* it (`claim`): one row in ``claims`` keyed by (kind, model, dataset) with its
owner id (``host:pid:token``) and a lease expiry. A claim is taken when no other live claim exists; a claim is
*dead* when its lease ran out (`DEFAULT_LEASE_S`, renewed by the owner with `renew_claims` as results arrive) or
when its owner is a process of this host that no longer exists, so a killed writer's pairs are taken over at once
on one machine and after the lease elsewhere. Taking over is a compare-and-set on the old owner, so exactly one
writer wins. Claims, not advisory locks: a claim is an ordinary row, identical on SQLite and PostgreSQL, visible to
`zooscope ls`-style readers, and it survives the connection (a writer commits every result in its own short
transaction, so a session-bound PostgreSQL advisory lock would need one connection held open per pair, and
SQLite has none). The catalog's unique constraint stays the last line: a writer whose lease was taken over and
then loses the insert race discards its own vector (`zooscope.zoo.embedrun`).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

import sqlalchemy as sa

from zooscope.zoo.catalog.engine import CatalogEngine, _key, _now, _row
from zooscope.zoo.catalog.records import ClaimRecord
from zooscope.zoo.catalog.schema import claims_table

__all__ = ["DEFAULT_LEASE_S", "CatalogClaims", "new_owner"]

DEFAULT_LEASE_S = 600.0


def new_owner() -> str:
    """Return a writer's claim owner id: ``host:pid:token`` (the token tells two runs of one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _owner_dead(owner: str) -> bool:
    """Return true when ``owner`` names a process of this host that is gone (its claims can be taken over at once)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class CatalogClaims(CatalogEngine):
    """The claim methods of `zooscope.zoo.catalog.Catalog` (see the module docstring)."""

    def claim(self, *, kind: str, model: str | None = None, dataset: str | None = None, owner: str,
              lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Claim (kind, model, dataset) for ``owner`` for ``lease_s`` seconds.

        False when another live writer holds it. Re-claiming one's own pair renews it.
        """
        t = claims_table
        where = (t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset))
        expires = _now() + dt.timedelta(seconds=float(lease_s))
        try:
            with self._write() as conn:
                cur = conn.execute(sa.select(t.c.owner, t.c.expires).where(*where)).first()
                if cur is None:
                    conn.execute(t.insert().values(kind=kind, model=_key(model), dataset=_key(dataset),
                                                   owner=owner, expires=expires))
                    return True
                held_by, until = cur
                if until.tzinfo is None:
                    until = until.replace(tzinfo=dt.UTC)
                if held_by != owner and until > _now() and not _owner_dead(held_by):
                    return False
                # compare-and-set on the previous owner: of two writers taking over one dead claim, one wins
                res = conn.execute(t.update().where(*where, t.c.owner == held_by).values(owner=owner,
                                                                                         expires=expires))
                return res.rowcount == 1
        except sa.exc.IntegrityError:  # PostgreSQL: another writer inserted the same claim first
            return False

    def renew_claims(self, owner: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Push back the expiry of every claim of ``owner`` (a writer calls this as its results arrive)."""
        t = claims_table
        with self._write() as conn:
            conn.execute(t.update().where(t.c.owner == owner)
                         .values(expires=_now() + dt.timedelta(seconds=float(lease_s))))

    def release_claims(self, owner: str, *, kind: str | None = None, model: str | None = None,
                       dataset: str | None = None) -> None:
        """Drop ``owner``'s claim on one pair (``kind`` given), or all of its claims."""
        t = claims_table
        stmt = t.delete().where(t.c.owner == owner)
        if kind is not None:
            stmt = stmt.where(t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset))
        with self._write() as conn:
            conn.execute(stmt)

    def claims(self, *, live_only: bool = False) -> list[ClaimRecord]:
        """Claim rows (kind, model, dataset, owner, expires); ``live_only``: those whose owner may still write."""
        rows = [_row(r, ClaimRecord, keyed=("model", "dataset")) for r in self._read(sa.select(claims_table))]
        if live_only:
            now = _now()
            rows = [r for r in rows if dt.datetime.fromisoformat(r.expires) > now and not _owner_dead(r.owner)]
        return rows
