"""The changelist action "Re-embed selected": in the request, as background tasks, or refused.

A selection up to ``VECTORSEARCH["ADMIN_REEMBED_MAX_ROWS"]`` is embedded during the request (for
at most ``ADMIN_REEMBED_MAX_SECONDS``); a larger one is queued as background tasks when a task
backend runs them outside the request, else refused with the ``vectorsearch_backfill`` command
that does it.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib import admin, messages
from django.db import DatabaseError, models
from django.http import HttpRequest
from django.utils.formats import number_format
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import tasks
from ..conf import get_settings
from ..exceptions import InvalidEmbedderError
from ..registry import Registration
from ..sync import BackfillResult, embed_rows, failure_summary
from .base import VectorSearchAdminBase

#: The most background tasks (of ``ADMIN_REEMBED_MAX_ROWS`` objects each) one re-embed queues;
#: a larger selection is refused with the command to run.
REEMBED_MAX_TASKS = 100


def backfill_command(registration: Registration, using: str) -> str:
    """The ``manage.py`` command that re-embeds every object of ``registration``."""
    database = "" if using == "default" else f" --database {using}"
    return f"python manage.py vectorsearch_backfill {registration.label} --all-rows{database}"


class ReembedActionMixin(VectorSearchAdminBase):
    """The action "Re-embed selected" embeds the selected objects again, whatever their state."""

    #: Offer the "Re-embed selected" action.
    vectorsearch_reembed_action: bool = True

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)
        if (
            self.actions is None
            or not self.vectorsearch_reembed_action
            or "_popup" in request.GET
            or not self.has_change_permission(request)
        ):
            return actions
        action = self.get_action("vectorsearch_reembed")
        if action is not None:
            actions[action[1]] = action
        return actions

    @admin.action(
        description=_("Re-embed selected %(verbose_name_plural)s"), permissions=["change"]
    )
    def vectorsearch_reembed(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        """Embed the selected objects again, whatever their state, and say how it went.

        At most ``VECTORSEARCH["ADMIN_REEMBED_MAX_ROWS"]`` objects are embedded in the request,
        stopping after ``ADMIN_REEMBED_MAX_SECONDS``; a larger selection is queued as background
        tasks, or refused with the command to run (:meth:`_reembed_outside_the_request`).
        """
        registration = self.get_vectorsearch_registration()
        config = get_settings()
        selected = queryset.count()
        if selected > config["ADMIN_REEMBED_MAX_ROWS"]:
            self._reembed_outside_the_request(request, registration, queryset, selected)
            return
        result = BackfillResult(registration)
        try:
            embed_rows(
                registration,
                queryset,
                force=True,
                on_error="skip",
                batch_size=int(config["BATCH_SIZE"]),
                deadline=time.monotonic() + config["ADMIN_REEMBED_MAX_SECONDS"],
                result=result,
            )
        except InvalidEmbedderError as e:  # a broken VECTORSEARCH_EMBEDDERS setting
            self.message_user(request, str(e), messages.ERROR)
            return
        except DatabaseError as e:  # the batches before it are written: say so
            self._report_reembed(request, registration, queryset, result, selected)
            self.message_user(
                request,
                gettext(
                    "The re-embed stopped on a database error (%(error)s): %(left)s of the "
                    "%(selected)s selected %(name)s were not re-embedded. Select them again, or "
                    "run: %(command)s"
                )
                % {
                    "error": (str(e).strip().splitlines() or [type(e).__name__])[0],
                    "left": number_format(
                        max(selected - result.embedded - len(result.failures), 0),
                        force_grouping=True,
                    ),
                    "selected": number_format(selected, force_grouping=True),
                    "name": self._reembed_name(selected),
                    "command": backfill_command(registration, queryset.db),
                },
                messages.ERROR,
            )
            return
        self._report_reembed(request, registration, queryset, result, selected)

    def _report_reembed(
        self,
        request: HttpRequest,
        registration: Registration,
        queryset: models.QuerySet[Any],
        result: BackfillResult,
        selected: int,
    ) -> None:
        embedded, failures = result.embedded, result.failures
        if embedded:
            self.message_user(
                request,
                ngettext(
                    "Re-embedded %(count)d %(name)s.", "Re-embedded %(count)d %(name)s.", embedded
                )
                % {"count": embedded, "name": self._reembed_name(embedded)},
                messages.SUCCESS,
            )
        if failures:
            self.message_user(
                request,
                ngettext(
                    "%(count)d object could not be embedded: %(errors)s",
                    "%(count)d objects could not be embedded: %(errors)s",
                    len(failures),
                )
                % {"count": len(failures), "errors": failure_summary(failures)},
                messages.ERROR,
            )
        if not result.complete:
            left = max(selected - result.rows, 0)
            self.message_user(
                request,
                gettext(
                    "Stopped after %(seconds)s s (VECTORSEARCH['ADMIN_REEMBED_MAX_SECONDS']) so "
                    "that the page answers in time: %(left)s of the %(selected)s selected "
                    "%(name)s were not re-embedded. Select them again, or run: %(command)s"
                )
                % {
                    "seconds": get_settings()["ADMIN_REEMBED_MAX_SECONDS"],
                    "left": number_format(left, force_grouping=True),
                    "selected": number_format(selected, force_grouping=True),
                    "name": self._reembed_name(selected),
                    "command": backfill_command(registration, queryset.db),
                },
                messages.WARNING,
            )
        if not embedded and not failures and result.complete:
            self.message_user(request, gettext("Nothing was re-embedded."), messages.WARNING)

    def _reembed_name(self, count: int) -> Any:
        meta = self.model._meta
        return meta.verbose_name if count == 1 else meta.verbose_name_plural

    def _reembed_outside_the_request(
        self,
        request: HttpRequest,
        registration: Registration,
        queryset: models.QuerySet[Any],
        selected: int,
    ) -> None:
        """Too many objects for one request: queue them as background tasks of at most
        ``ADMIN_REEMBED_MAX_ROWS`` objects each, when a task backend runs tasks outside the
        request and there are at most :data:`REEMBED_MAX_TASKS` such tasks; otherwise re-embed
        nothing and give the command that does it."""
        limit = int(get_settings()["ADMIN_REEMBED_MAX_ROWS"])
        using = queryset.db
        values: dict[str, Any] = {
            "count": number_format(selected, force_grouping=True),
            "name": self._reembed_name(selected),
            "limit": number_format(limit, force_grouping=True),
            "command": backfill_command(registration, using),
        }
        backend = tasks.background_backend()
        if backend is not None and selected > limit * REEMBED_MAX_TASKS:
            # Reading and queueing that many ids would itself hold the request too long.
            values["tasks"] = REEMBED_MAX_TASKS
            self.message_user(
                request,
                gettext(
                    "Nothing was re-embedded: %(count)s %(name)s are more than the admin "
                    "queues as %(tasks)d background tasks of "
                    "VECTORSEARCH['ADMIN_REEMBED_MAX_ROWS'] = %(limit)s. Run instead: "
                    "%(command)s (it re-embeds every row of the model, not only the selected "
                    "ones)."
                )
                % values,
                messages.WARNING,
            )
            return
        if backend is not None:
            ids = [str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True)]
            try:
                queued = tasks.enqueue(registration, ids, using, force=True, chunk_size=limit)
            except Exception as e:  # whatever the site's task backend raises
                values["error"] = f"{type(e).__name__}: {e}"
                self.message_user(
                    request,
                    gettext(
                        "Nothing was re-embedded: queueing the %(count)s %(name)s failed "
                        "(%(error)s). Run instead: %(command)s"
                    )
                    % values,
                    messages.ERROR,
                )
                return
            values.update(tasks=queued, backend=getattr(backend, "alias", "default"))
            self.message_user(
                request,
                gettext(
                    "%(count)s %(name)s are more than the admin re-embeds during a request "
                    "(VECTORSEARCH['ADMIN_REEMBED_MAX_ROWS'] = %(limit)s): they were queued as "
                    "%(tasks)d background task(s) on the task backend '%(backend)s' and are "
                    "re-embedded when a worker runs them. Each task's result says how many it "
                    "embedded and which failed."
                )
                % values,
                messages.SUCCESS,
            )
            return
        self.message_user(
            request,
            gettext(
                "Nothing was re-embedded: %(count)s %(name)s are more than the admin re-embeds "
                "during a request (VECTORSEARCH['ADMIN_REEMBED_MAX_ROWS'] = %(limit)s), and no "
                "task backend runs tasks in the background (TASKS). Run instead: %(command)s "
                "(it re-embeds every row of the model, not only the selected ones)."
            )
            % values,
            messages.WARNING,
        )
