"""Storage Commitment Push Model SCP (PS3.4 Annex J) end to end over real sockets.

DCMTK has no storage commitment SCU, so pynetdicom plays the requester: one AE ("REQ", declared
in ``[modalities]``) that sends the N-ACTION and also listens, accepting the SCP role that the hub
proposes when it opens a new association for the N-EVENT-REPORT (PS3.4 J.3.3.1.3).
"""

from __future__ import annotations

import json
import logging
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import StorageCommitmentPushModel

from hub.app import Hub
from hub.domain.origin import Origin
from hub.services.commitment import CLASS_INSTANCE_CONFLICT, NO_SUCH_OBJECT_INSTANCE
from hub.store.commitment import CommitmentRepository
from interfaces.serve import Listeners
from tests.conftest import free_port, make_settings
from tests.synthetic import uid, write_series

HOST = "127.0.0.1"
PUSH_INSTANCE = "1.2.840.10008.1.20.1.1"
REPORT_WAIT = 20.0


@dataclass
class Requester:
    """The storage commitment SCU: requests on its own associations, receives reports on them or
    on the associations the hub opens to its listening port."""

    ae: AE
    port: int
    reports: queue.Queue[tuple[str, int, Dataset]] = field(default_factory=queue.Queue)

    def on_report(self, channel: str):
        def handler(event: evt.Event) -> tuple[int, None]:
            req = event.request
            assert req.AffectedSOPClassUID == StorageCommitmentPushModel
            assert req.AffectedSOPInstanceUID == PUSH_INSTANCE
            self.reports.put((channel, event.event_type, event.event_information))
            return 0x0000, None

        return handler

    def associate(self, hub_port: int, *, ae_title: str = "REQ", listen_same: bool = True) -> Association:
        ae = AE(ae_title=ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.add_requested_context(StorageCommitmentPushModel)
        handlers = [(evt.EVT_N_EVENT_REPORT, self.on_report("same"))] if listen_same else []
        assoc = ae.associate(HOST, hub_port, ae_title="RISHUB", evt_handlers=handlers)
        assert assoc.is_established
        return assoc

    def next_report(self, timeout: float = REPORT_WAIT) -> tuple[str, int, Dataset]:
        return self.reports.get(timeout=timeout)


@dataclass
class Env:
    hub: Hub
    listeners: Listeners
    requester: Requester
    stored: list[tuple[str, str]]  # (SOP Class UID, SOP Instance UID) of the stored instances

    @property
    def port(self) -> int:
        return self.listeners.dimse.port


def start_requester() -> Requester:
    ae = AE(ae_title="REQ")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    port = free_port()
    requester = Requester(ae, port)
    ae.start_server((HOST, port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, requester.on_report("new"))])
    return requester


@pytest.fixture
def make_env(tmp_path: Path, db_url: str):  # noqa: ANN201
    started: list[tuple[Hub, Listeners, Requester]] = []

    def make(modality: dict[str, object] | None = None, **env: str) -> Env:
        requester = start_requester()
        req = {"aet": "REQ", "host": HOST, "port": requester.port, **(modality or {})}
        settings = make_settings(
            tmp_path / f"data{len(started)}", db_url, RISHUB_MODALITIES=json.dumps({"REQ": req}), **env
        )
        hub = Hub.open(settings, upgrade_schema=True)
        listeners = Listeners(hub)
        listeners.start()
        started.append((hub, listeners, requester))
        stored = []
        for path in write_series(tmp_path / "in", 3, rows=16, cols=16, seed="stgcmt"):
            result = hub.ingest.store(Origin("import"), path)
            stored.append((CTImageStorage, result.instance.sop_instance_uid))
        return Env(hub, listeners, requester, stored)

    yield make
    for hub, listeners, requester in started:
        listeners.stop()
        requester.ae.shutdown()
        hub.close()


@pytest.fixture
def env(make_env) -> Env:  # noqa: ANN001
    return make_env()


def action_information(transaction_uid: str | None, refs: list[tuple[str, str]] | None) -> Dataset:
    ds = Dataset()
    if transaction_uid is not None:
        ds.TransactionUID = transaction_uid
    if refs is not None:
        items = []
        for sop_class, sop_instance in refs:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            items.append(item)
        ds.ReferencedSOPSequence = items
    return ds


def request_commitment(
    assoc: Association, transaction_uid: str | None, refs: list[tuple[str, str]] | None, *,
    action_type: int = 1, instance: str = PUSH_INSTANCE,
) -> int:
    status, _ = assoc.send_n_action(
        action_information(transaction_uid, refs), action_type, StorageCommitmentPushModel, instance
    )
    return status.Status


def refs_of(ds: Dataset, keyword: str) -> list[tuple[str, str]]:
    return [(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) for item in ds.get(keyword, [])]


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = REPORT_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in caplog.text:
            return
        time.sleep(0.05)
    raise AssertionError(f"no log containing {text!r}")


# --------------------------------------------------------------------------- the service


def test_service_answers_from_index_and_blobs(hub: Hub, tmp_path: Path):
    stored = [hub.ingest.store(Origin("import"), p) for p in write_series(tmp_path / "in", 4, rows=16, cols=16)]
    uids = [r.instance.sop_instance_uid for r in stored]
    hub.commitment.repository = CommitmentRepository(hub.db, batch=2)  # several IN batches
    missing_blob = hub.index.instance_by_sop_uid(uids[3])
    assert missing_blob is not None
    hub.blobs.path(missing_blob["blob_key"]).unlink()
    unknown = uid("stgcmt", "unknown")
    refs = [(CTImageStorage, uids[0]), (CTImageStorage, uids[1]), (CTImageStorage, uids[0]),
            (MRImageStorage, uids[2]), (CTImageStorage, unknown), (CTImageStorage, uids[3])]

    result = hub.commitment.check(refs)

    assert [(r.sop_class_uid, r.sop_instance_uid) for r in result.committed] == refs[:3]
    assert [(f.sop_class_uid, f.sop_instance_uid, f.reason) for f in result.failed] == [
        (MRImageStorage, uids[2], CLASS_INSTANCE_CONFLICT),
        (CTImageStorage, unknown, NO_SUCH_OBJECT_INSTANCE),
        (CTImageStorage, uids[3], NO_SUCH_OBJECT_INSTANCE),
    ]
    assert result.event_type == 2
    assert hub.commitment.check(refs[:2]).event_type == 1


# --------------------------------------------------------------------------- over DIMSE


def test_all_committed_reported_on_the_same_association(env: Env):
    assoc = env.requester.associate(env.port)
    try:
        transaction = uid("stgcmt", "tx-all")
        assert request_commitment(assoc, transaction, env.stored) == 0x0000
        channel, event_type, info = env.requester.next_report()
    finally:
        assoc.release()
    assert (channel, event_type) == ("same", 1)
    assert info.TransactionUID == transaction
    assert refs_of(info, "ReferencedSOPSequence") == env.stored
    assert "FailedSOPSequence" not in info


def test_failures_carry_reasons(env: Env):
    unknown = (CTImageStorage, uid("stgcmt", "never-stored"))
    wrong_class = (MRImageStorage, env.stored[1][1])
    refs = [env.stored[0], unknown, wrong_class, env.stored[2]]
    assoc = env.requester.associate(env.port)
    try:
        transaction = uid("stgcmt", "tx-some")
        assert request_commitment(assoc, transaction, refs) == 0x0000
        channel, event_type, info = env.requester.next_report()
    finally:
        assoc.release()
    assert (channel, event_type) == ("same", 2)
    assert info.TransactionUID == transaction
    assert refs_of(info, "ReferencedSOPSequence") == [env.stored[0], env.stored[2]]
    assert refs_of(info, "FailedSOPSequence") == [unknown, wrong_class]
    assert [item.FailureReason for item in info.FailedSOPSequence] == [0x0112, 0x0119]


def test_report_on_a_new_association_when_the_requester_releases(env: Env):
    assoc = env.requester.associate(env.port, listen_same=False)
    transaction = uid("stgcmt", "tx-new")
    assert request_commitment(assoc, transaction, env.stored[:2]) == 0x0000
    assoc.release()  # at once, as PS3.4 J.3.2.1.2 allows
    channel, event_type, info = env.requester.next_report()
    assert (channel, event_type) == ("new", 1)
    assert info.TransactionUID == transaction
    assert refs_of(info, "ReferencedSOPSequence") == env.stored[:2]


def test_report_on_a_new_association_when_the_same_one_refuses_it(env: Env):
    """A requester that keeps the association open but does not handle N-EVENT-REPORT there."""
    assoc = env.requester.associate(env.port, listen_same=False)
    try:
        transaction = uid("stgcmt", "tx-refused")
        assert request_commitment(assoc, transaction, env.stored) == 0x0000
        channel, event_type, info = env.requester.next_report()
    finally:
        if assoc.is_established:
            assoc.release()
    assert (channel, event_type) == ("new", 1)
    assert info.TransactionUID == transaction


def test_invalid_requests_fail_without_a_report(env: Env):
    assoc = env.requester.associate(env.port)
    try:
        tx = uid("stgcmt", "tx-bad")
        assert request_commitment(assoc, None, env.stored) == 0x0115  # no Transaction UID
        assert request_commitment(assoc, "", env.stored) == 0x0115  # empty Transaction UID
        assert request_commitment(assoc, tx, None) == 0x0115  # no Referenced SOP Sequence
        assert request_commitment(assoc, tx, []) == 0x0115  # empty Referenced SOP Sequence
        assert request_commitment(assoc, tx, [(CTImageStorage, "")]) == 0x0115  # item without instance UID
        assert request_commitment(assoc, tx, env.stored, action_type=2) == 0x0123  # no such action
        assert request_commitment(assoc, tx, env.stored, instance=uid("stgcmt", "x")) == 0x0112  # no such instance
        with pytest.raises(queue.Empty):
            env.requester.next_report(timeout=1.5)
        assert assoc.is_established
    finally:
        assoc.release()
    with pytest.raises(queue.Empty):
        env.requester.reports.get_nowait()


def test_unknown_requester_is_logged_and_the_hub_keeps_serving(env: Env, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="interfaces.dimse.commit")
    assoc = env.requester.associate(env.port, ae_title="STRANGER", listen_same=False)
    assert request_commitment(assoc, uid("stgcmt", "tx-stranger"), env.stored) == 0x0000
    assoc.release()
    wait_for_log(caplog, "requester aet=STRANGER is not in [modalities]")
    with pytest.raises(queue.Empty):
        env.requester.next_report(timeout=0.5)

    assoc = env.requester.associate(env.port)  # still serving
    try:
        assert request_commitment(assoc, uid("stgcmt", "tx-after"), env.stored[:1]) == 0x0000
        assert env.requester.next_report()[:2] == ("same", 1)
    finally:
        assoc.release()


def test_needs_the_store_permission(make_env):  # noqa: ANN001
    env = make_env({"allow_store": False}, RISHUB_DICOM_CHECK_CALLING="true")
    assoc = env.requester.associate(env.port)
    try:
        assert request_commitment(assoc, uid("stgcmt", "tx-refused"), env.stored) == 0x0124
    finally:
        assoc.release()
    with pytest.raises(queue.Empty):
        env.requester.next_report(timeout=1.0)
