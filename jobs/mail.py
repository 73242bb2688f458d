"""The e-mail job: sending what is due from the outbox (``storage/mail/outbox.py``)
through the SMTP server (``jobs/adapters/smtp.py``). Run by the embedded runner's own
mail loop (``jobs/runner.py``) or as a ``deliver_mail`` ARQ job (``jobs/worker.py``),
never inside the sweep: a slow SMTP server must not hold up a deletion."""

from __future__ import annotations

import logging

from jobs.adapters.smtp import SendFailed, SmtpSender, compose
from jobs.tasks import BATCH, MAX_BATCHES, Ctx, runtime_of
from storage.mail import outbox

log = logging.getLogger("lorashelf.jobs")


async def deliver_mail(ctx: Ctx) -> int:
    """Send the e-mail that is due (``storage/mail/outbox.py``): each message claimed
    with a conditional update, checked again (still the owner's confirmed address, still
    wanted), sent, and recorded; a failure is retried with back-off until the retry
    window ends, then it is a dead letter. Nothing without ``LORASHELF_SMTP_URL``.
    Returns how many were sent."""
    rt = runtime_of(ctx)
    if not rt.settings.smtp_url:
        return 0
    sender: SmtpSender = ctx.get("smtp") or SmtpSender(rt.settings)
    sent = 0
    for _ in range(MAX_BATCHES):
        batch = await outbox.due(rt.clock.now(), limit=BATCH)
        if not batch:
            break
        for mail_id in batch:
            mail = await outbox.claim(mail_id, now=rt.clock.now())
            if mail is None:
                continue  # another sender has it
            if await outbox.still_wanted(mail) is None:
                await outbox.dropped(mail, now=rt.clock.now())
                continue
            try:
                await sender.send(compose(rt.settings, mail))
            except SendFailed as exc:
                rt.metrics.mail_failed()
                dead = await outbox.failed(
                    mail, error=str(exc), permanent=exc.permanent, now=rt.clock.now()
                )
                if dead:
                    rt.metrics.mail_dead()
                continue
            except Exception as exc:  # noqa: BLE001 - composing failed: retried, then dead
                log.exception("mail %s could not be composed", mail_id)
                rt.metrics.mail_failed()
                if await outbox.failed(mail, error=repr(exc), permanent=False, now=rt.clock.now()):
                    rt.metrics.mail_dead()
                continue
            await outbox.sent(mail, now=rt.clock.now())
            rt.metrics.mail_sent(mail.kind)
            sent += 1
        if len(batch) < BATCH:
            break
    return sent
