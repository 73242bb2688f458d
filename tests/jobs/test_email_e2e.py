"""E-mail end to end: a real `lorashelf serve` (its embedded runner sends) talking to a
real SMTP server in this process (aiosmtpd: STARTTLS, a login, a certificate made for
the test), read back as it arrived. Windows are seconds long."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from tests.mail import SENDER, Received, SmtpServer, smtp_server
from tests.processes import (
    Owner,
    Server,
    free_port,
    now_utc,
    parse_time,
    redis_server,
    serve,
    wait_for,
    wait_for_deletion,
    wait_for_reminder,
    worker,
)

REMINDER = 3  # seconds before deletion
RETENTION = 7


def config(data_dir: Path, mail: SmtpServer, **extra: str) -> dict[str, str]:
    return {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_PRIVATE_RETENTION": f"{RETENTION}s",
        "LORASHELF_REMINDERS": f"{REMINDER}s",
        "LORASHELF_SWEEP_INTERVAL": "30s",
        **mail.env,
        **extra,
    }


def link_in(message: Received, path: str) -> str:
    found = re.search(r"https?://\S+" + re.escape(path) + r"\?token=\S+", message.body())
    assert found is not None, message.body()
    return found.group(0)


def confirm_address(owner: Owner, mail: SmtpServer, address: str) -> None:
    """Set the owner's address and follow the link that arrives, as a person does."""
    answer = owner.mutate(
        "setEmail",
        "mutation($i: SetEmailInput!) { setEmail(input: $i) { user { email emailVerified } "
        "userErrors { code message } } }",
        {"i": {"email": address}},
    )
    assert answer["user"] == {"email": address, "emailVerified": False}
    arrived = mail.wait_for(lambda ms: [m for m in ms if address in m.envelope_to])[-1]
    link = link_in(arrived, "/email/verify")
    page = httpx.get(link, timeout=10)  # a mail scanner following it changes nothing
    assert page.status_code == 200 and "<form" in page.text
    assert owner.gql("{ viewer { emailVerified } }")["viewer"]["emailVerified"] is False
    done = httpx.post(link, timeout=10)
    assert done.status_code == 200 and "confirmed" in done.text
    assert owner.gql("{ viewer { emailVerified } }")["viewer"]["emailVerified"] is True


@contextmanager
def serving(env: Mapping[str, str], cwd: Path) -> Iterator[Server]:
    """`lorashelf serve` with its metrics on a port of their own (never the API's)."""
    metrics_port = free_port()
    with serve(env, cwd, args=["--metrics-port", str(metrics_port)]) as running:
        running.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
        yield running


def metric(server: Server, name: str) -> dict[str, float]:
    """A metric's samples by their labels' text, from the metrics port."""
    text = httpx.get(server.metrics_url, timeout=10).text  # type: ignore[attr-defined]
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(re.escape(name) + r"(\{[^}]*\})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def test_reminders_and_deletion_notices_arrive_on_time(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as mail, serving(config(tmp_path / "var", mail), tmp_path) as server:
        # given Alice, who confirmed her address through the link she received
        alice = Owner.sign_up(server.url, "alice")
        confirm_address(alice, mail, "alice@example.test")
        verification = mail.to("alice@example.test")[0]
        assert verification.message["From"] == SENDER
        assert "List-Unsubscribe" not in verification.message  # not one a person may stop
        # and the link once more: used
        used = httpx.post(link_in(verification, "/email/verify"), timeout=10)
        assert used.status_code == 400 and used.headers["x-lorashelf-code"] == "TOKEN_USED"

        # when she publishes a private dataset
        published = alice.publish_private_dataset(alice.create_model("Sphinx Moth"), "v-aurora")
        # then the reminder arrives by e-mail on time
        reminder = mail.wait_for(
            lambda ms: [m for m in ms if "deleted soon" in m.subject], timeout=RETENTION + 5
        )[0]
        due = published.expires_at - timedelta(seconds=REMINDER)
        arrived = reminder.at - due.timestamp()
        assert -0.05 <= arrived < 1.5, f"the reminder arrived {arrived:.2f}s after it was due"
        in_app = wait_for_reminder(alice, published.dataset_id)
        assert reminder.to == "alice@example.test"
        # saying roughly how long is left, and where to see the rest
        html = reminder.body("html")
        for part in (reminder.body(), html):
            assert f"will be deleted in about {REMINDER} seconds" in part
            assert server.url in part
        # and naming nothing of the dataset (the app does): no file, model or version,
        # nor the instant its window ends (publishedAt + the public retention: it would
        # point at the version), in any form
        ends = published.expires_at
        instants = {
            ends.strftime("%Y-%m-%d %H:%M:%S"),
            ends.strftime("%H:%M:%S"),
            ends.isoformat(),
            str(int(ends.timestamp())),
        }
        assert ends.strftime("%Y-%m-%d %H:%M:%S UTC") in in_app["message"]
        for private in ("cats.zip", "Sphinx Moth", "v-aurora", *instants):
            assert private not in reminder.body() and private not in html, private
            assert private not in reminder.subject
        for private in ("cats.zip", "Sphinx Moth", "v-aurora"):
            assert private in in_app["message"]
        unsubscribe = reminder.message["List-Unsubscribe"]
        assert re.fullmatch(r"<https?://\S+/email/unsubscribe\?token=\S+>", unsubscribe)
        assert reminder.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # and after the deletion, its notice
        wait_for_deletion(alice, published.dataset_id, timeout=RETENTION + 5)
        deleted = mail.wait_for(lambda ms: [m for m in ms if "was deleted" in m.subject])[0]
        assert reminder.at < deleted.at and deleted.at >= published.expires_at.timestamp()
        assert "private training datasets was deleted." in deleted.body()
        for private in ("cats.zip", "Sphinx Moth", "v-aurora", *instants):
            assert private not in deleted.body() and private not in deleted.body("html")
        # the address is in no log line (masked where one mentions it)
        log = server.log.read_text()
        assert "alice@example.test" not in log
        assert "a***@e***.test" in log
        assert metric(server, "lorashelf_mail_messages")['{status="SENT"}'] == 3


def test_opting_out_is_honoured_and_one_click_unsubscribe_works(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as mail, serving(config(tmp_path / "var", mail), tmp_path) as server:
        alice = Owner.sign_up(server.url, "alice")
        confirm_address(alice, mail, "alice@example.test")
        # given Alice wants no reminders by e-mail
        alice.mutate(
            "setEmailPreferences",
            "mutation { setEmailPreferences(input: {reminders: false}) "
            "{ user { emailPreferences { reminders deletions } } userErrors { code } } }",
            {},
        )
        # when a private dataset of hers is reminded about, then deleted
        published = alice.publish_private_dataset()
        wait_for_reminder(alice, published.dataset_id, timeout=RETENTION + 5)  # in the app
        wait_for_deletion(alice, published.dataset_id, timeout=RETENTION + 5)
        deleted = mail.wait_for(lambda ms: [m for m in ms if "was deleted" in m.subject])[0]
        # then no reminder came by e-mail, the deletion notice did
        assert [m.subject for m in mail.to("alice@example.test")] == [
            "[lorashelf] Confirm your e-mail address",
            deleted.subject,
        ]
        # when her mail client opens the unsubscribe link, then unsubscribes with one
        # click (RFC 8058)
        target = deleted.message["List-Unsubscribe"].strip("<>")
        assert httpx.get(target, timeout=10).status_code == 200
        response = httpx.post(target, data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert response.status_code == 200
        # then whoever reads the server's log finds neither link's token to replay (the
        # unsubscribe token never expires)
        verify = link_in(mail.to("alice@example.test")[0], "/email/verify")
        wait_for(lambda: server.log.read_text().count("/email/unsubscribe") >= 2, timeout=10)
        log = server.log.read_text()
        assert log.count("/email/verify?token=[redacted]") >= 2, log[-2000:]
        for link in (verify, target):
            token = parse_qs(urlsplit(link).query)["token"][0]
            assert token not in log and quote(token) not in log, link
        # then deletion notices stop too
        prefs = alice.gql("{ viewer { emailPreferences { reminders deletions } } }")
        assert prefs["viewer"]["emailPreferences"] == {"reminders": False, "deletions": False}
        second = alice.publish_private_dataset(version="v2")
        wait_for_deletion(alice, second.dataset_id, timeout=RETENTION + 5)
        time.sleep(1.0)  # what would have been sent is sent within a moment
        assert len(mail.to("alice@example.test")) == 2


def test_an_smtp_outage_delays_the_mail_not_the_reminder(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as mail, serving(config(tmp_path / "var", mail), tmp_path) as server:
        alice = Owner.sign_up(server.url, "alice")
        confirm_address(alice, mail, "alice@example.test")
        # given the SMTP server goes down
        mail.stop()
        published = alice.publish_private_dataset()
        # then the in-app reminder is on time all the same
        in_app = wait_for_reminder(alice, published.dataset_id, timeout=RETENTION + 5)
        due = published.expires_at - timedelta(seconds=REMINDER)
        assert parse_time(in_app["createdAt"]) - due < timedelta(seconds=1)
        # and the e-mail waits, retried with back-off
        wait_for(
            lambda: metric(server, "lorashelf_mail_failed_attempts_total").get("", 0) >= 2,
            timeout=15,
            what="two failed attempts",
        )
        assert metric(server, "lorashelf_mail_messages")['{status="PENDING"}'] >= 1
        # when the server is back
        mail.start()
        # then the reminder arrives, and the deletion notice after it
        reminder = mail.wait_for(
            lambda ms: [m for m in ms if "deleted soon" in m.subject], timeout=40
        )[0]
        assert "will be deleted in about" in reminder.body() and "cats.zip" not in reminder.body()
        mail.wait_for(lambda ms: [m for m in ms if "was deleted" in m.subject], timeout=40)
        assert metric(server, "lorashelf_mail_messages")['{status="DEAD"}'] == 0


def test_a_message_never_taken_becomes_a_dead_letter(tmp_path: Path) -> None:
    """(Over smtps://: TLS from the first byte.)"""
    with smtp_server(tmp_path, implicit_tls=True) as mail:
        env = config(tmp_path / "var", mail, LORASHELF_MAIL_RETRY_FOR="6s")
        with serving(env, tmp_path) as server:
            # given Alice confirmed her address (over smtps://)
            alice = Owner.sign_up(server.url, "alice")
            confirm_address(alice, mail, "alice@example.test")
            # when the server goes away for longer than the retry window
            mail.stop()
            published = alice.publish_private_dataset()
            wait_for_reminder(alice, published.dataset_id, timeout=RETENTION + 5)
            # then the reminder's e-mail is a dead letter, counted in /metrics
            wait_for(
                lambda: metric(server, "lorashelf_mail_messages").get('{status="DEAD"}', 0) >= 1,
                timeout=20,
                what="a dead letter",
            )
            assert metric(server, "lorashelf_mail_dead_letters_total")[""] >= 1
            assert now_utc() < published.expires_at + timedelta(seconds=30)


def test_with_redis_the_worker_sends_on_time(tmp_path: Path) -> None:
    """`serve` only enqueues; `lorashelf worker` sends: a verification queued by a request,
    and a reminder queued by the worker's own job, each by a `deliver_mail` job at once."""
    with (
        smtp_server(tmp_path) as mail,
        redis_server(tmp_path / "redis") as redis,
    ):
        port = free_port()  # the worker builds links too: it needs the public URL
        env = config(
            tmp_path / "var",
            mail,
            LORASHELF_REDIS_URL=redis.url,
            LORASHELF_PUBLIC_URL=f"http://127.0.0.1:{port}",
        )
        with worker(env, tmp_path), serve(env, tmp_path, port=port) as server:
            alice = Owner.sign_up(server.url, "alice")
            confirm_address(alice, mail, "alice@example.test")
            published = alice.publish_private_dataset()
            reminder = mail.wait_for(
                lambda ms: [m for m in ms if "deleted soon" in m.subject], timeout=RETENTION + 5
            )[0]
            due = published.expires_at - timedelta(seconds=REMINDER)
            arrived = reminder.at - due.timestamp()
            assert -0.05 <= arrived < 1.5, f"the reminder arrived {arrived:.2f}s after it was due"
            mail.wait_for(lambda ms: [m for m in ms if "was deleted" in m.subject], timeout=15)
