"""The console's pages beside Django's change list and detail page: create, download, verify,
restore confirmation and status, cleanup, and the live status JSON.

Each is wrapped in `admin_site.admin_view` (staff only) and checks its own model permission.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _

from backups_app import archives, services
from backups_app.conf import setting
from backups_app.errors import BackupError
from backups_app.models import ACTIVE_RESTORE_STATUSES, BackupJob, Restore, RestoreStatus
from backups_app.services.restore import confirmation_hint
from backups_app.views import archive_response

from .display import ACTIVE_STATUSES, backup_json, restore_fields, restore_json, seconds_text
from .forms import CleanupForm, CreateBackupForm, RestoreForm
from .stats import stats_panel

TEMPLATES = "admin/backups_app/backupjob/"


def _ids(text: str | None) -> list[int]:
    return [int(part) for part in (text or "").split(",") if part.strip().isdigit()][:200]


class BackupConsoleViews:
    """Mixed into BackupJobAdmin."""

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("create/", wrap(self.create_view), name="%s_%s_create" % info),
            path("status/", wrap(self.status_view), name="%s_%s_status" % info),
            path("cleanup/", wrap(self.cleanup_view), name="%s_%s_cleanup" % info),
            path("restores/<int:restore_id>/", wrap(self.restore_status_view), name="%s_%s_restore_status" % info),
            path("restores/<int:restore_id>/undo/", wrap(self.undo_restore_view), name="%s_%s_undo_restore" % info),
            path("<path:object_id>/download/", wrap(self.download_view), name="%s_%s_download" % info),
            path("<path:object_id>/verify/", wrap(self.verify_view), name="%s_%s_verify" % info),
            path("<path:object_id>/drill/", wrap(self.drill_view), name="%s_%s_drill" % info),
            path("<path:object_id>/restore/", wrap(self.restore_view), name="%s_%s_restore" % info),
            *super().get_urls(),
        ]

    def url(self, name, *args):
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args, current_app=self.admin_site.name)

    def console_context(self, request, **context):
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "media": self.media,
            "status_url": self.url("status"),
            **context,
        }

    def get_job_or_404(self, request, object_id):
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404(_("There is no backup #%(id)s.") % {"id": object_id})
        return job

    # Create -----------------------------------------------------------------------------------

    def create_view(self, request):
        if not self.has_create_permission(request):
            raise PermissionDenied
        form = CreateBackupForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                job = services.request_backup(**form.cleaned_data, acting_user=request.user)
            except BackupError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    _("Backup #%(id)s of %(database)s is queued; a worker runs it and this list follows it.")
                    % {"id": job.pk, "database": job.database},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self.url("changelist"))
        context = self.console_context(request, title=_("Create a backup"), form=form)
        return TemplateResponse(request, TEMPLATES + "create.html", context)

    # Live status ------------------------------------------------------------------------------

    def status_view(self, request):
        """Return the state of the backups and restores a page shows (?backups=1,2&restores=3) as JSON."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        # It reads only: the workers mark jobs whose worker died as failed (services.fail_dead_jobs).
        restores = Restore.objects.filter(pk__in=_ids(request.GET.get("restores"))).select_related("safety_backup")
        data = {
            "backups": [backup_json(job) for job in BackupJob.objects.filter(pk__in=_ids(request.GET.get("backups")))],
            "restores": [
                restore_json(restore, safety_url=self.safety_url(restore))
                for restore in restores
            ],
            "active": BackupJob.objects.filter(status__in=ACTIVE_STATUSES).exists()
            or Restore.objects.filter(status__in=ACTIVE_RESTORE_STATUSES).exists(),
        }
        if request.GET.get("stats"):
            data["stats_html"] = render_to_string(TEMPLATES + "stats_panel.html", {"stats": stats_panel()}, request)
        return JsonResponse(data)

    # Download and verify ----------------------------------------------------------------------

    def download_view(self, request, object_id):
        if not self.has_download_permission(request):
            raise PermissionDenied
        job = self.get_job_or_404(request, object_id)
        try:
            presigned = services.download_url(backup=job, acting_user=request.user)
            archive = None if presigned else services.open_backup(backup=job, acting_user=request.user)
        except BackupError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(self.url("change", job.pk))
        if presigned:
            return HttpResponseRedirect(presigned)
        return archive_response(job, archive)

    def verify_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_verify_permission(request):
            raise PermissionDenied
        self.verify_and_report(request, self.get_job_or_404(request, object_id))
        return HttpResponseRedirect(self.url("change", object_id))

    def verify_and_report(self, request, job):
        result = services.verify_backup(backup=job, acting_user=request.user)
        if result.ok and result.note:
            self.message_user(
                request, _("Backup #%(id)s matches its SHA-256 checksum. %(note)s") % {"id": job.pk, "note": result.note},
                messages.WARNING,
            )
        elif result.ok:
            self.message_user(
                request,
                _("Backup #%(id)s is intact: its archive matches its SHA-256 checksum and reads through.") % {"id": job.pk},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, _("Backup #%(id)s is damaged: %(problem)s") % {"id": job.pk, "problem": result.problem},
                messages.ERROR,
            )

    # Restore drill ------------------------------------------------------------------------------

    def drill_view(self, request, object_id):
        """Queue a restore drill of one backup (POST); its result shows on the backup's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_restore_permission(request):
            raise PermissionDenied
        self.drill_and_report(request, self.get_job_or_404(request, object_id))
        return HttpResponseRedirect(self.url("change", object_id))

    def drill_and_report(self, request, job):
        try:
            drill = services.request_drill(backup=job, acting_user=request.user)
        except BackupError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, _(
            "Restore drill #%(id)s of backup #%(backup)s is queued: a worker restores it into a scratch database, "
            "checks it and drops it; the result shows on the backup's page."
        ) % {"id": drill.pk, "backup": job.pk}, messages.SUCCESS)

    # Restore ----------------------------------------------------------------------------------

    def restore_view(self, request, object_id):
        """Show the restore confirmation of one backup; confirming posts to the restore_selected action."""
        if not self.has_restore_permission(request):
            raise PermissionDenied
        job = self.get_job_or_404(request, object_id)
        # ?database=… (the Retry link of a failed restore) chooses the target; the rest is asked again.
        initial = {"database": request.GET["database"]} if request.GET.get("database") else {}
        return self.restore_confirmation(request, job, RestoreForm(backup=job, initial=initial))

    def restore_confirmation(self, request, backup, form):
        try:
            manifest, manifest_problem = archives.read_manifest(backup.file_name + archives.MANIFEST_SUFFIX), ""
        except BackupError as exc:
            manifest, manifest_problem = None, str(exc)
        try:
            tables, tables_problem = services.archive_tables(backup=backup), ""
        except BackupError as exc:
            tables, tables_problem = [], str(exc)
        targets = [
            {"alias": alias, "name": connections[alias].settings_dict["NAME"], "vendor": connections[alias].vendor,
             "hint": confirmation_hint(alias)}
            for alias, _label in form.fields["database"].choices
        ]
        context = self.console_context(
            request,
            title=_("Restore backup #%(id)s?") % {"id": backup.pk},
            backup=backup,
            form=form,
            manifest=manifest,
            manifest_problem=manifest_problem,
            tables=tables,
            tables_problem=tables_problem,
            targets=targets,
            queryset=[backup],
            action_checkbox_name="_selected_action",
            form_url=self.url("changelist"),
            chosen_database=form["database"].value(),
        )
        return TemplateResponse(request, TEMPLATES + "restore_confirmation.html", context)

    def safety_url(self, restore) -> str:
        return self.url("change", restore.safety_backup_id) if restore.safety_backup_id else ""

    def restore_status_view(self, request, restore_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        restore = get_object_or_404(Restore.objects.select_related("backup", "safety_backup"), pk=restore_id)
        running = restore.status in ACTIVE_RESTORE_STATUSES
        context = self.console_context(
            request,
            title=_("Restore #%(id)s into %(database)s") % {"id": restore.pk, "database": restore.database},
            restore=restore,
            running=running,
            fields=restore_fields(restore),
            status=restore.status,
            safety_url=self.safety_url(restore),
            lock_timeout=seconds_text(setting("BACKUP_LOCK_TIMEOUT")),
            # Retrying a restore asks for the confirmation (and any trust) again, as the first time.
            retry_url=f"{self.url('restore', restore.backup_id)}?{urlencode({'database': restore.database})}"
            if restore.status == RestoreStatus.FAILED and restore.backup_id and self.has_restore_permission(request)
            else "",
            undo_url=self.url("undo_restore", restore.pk) if self.can_undo(request, restore) else "",
        )
        return TemplateResponse(request, TEMPLATES + "restore_status.html", context)

    def can_undo(self, request, restore) -> bool:
        return bool(restore.status == RestoreStatus.COMPLETED and restore.kept_database and not restore.undone_at
                    and not restore.kept_dropped_at and self.has_restore_permission(request))

    def undo_restore_view(self, request, restore_id):
        """GET shows what an undo does; POST with post=yes swaps the kept database back (undo_restore)."""
        if not self.has_restore_permission(request):
            raise PermissionDenied
        restore = get_object_or_404(Restore.objects.select_related("backup"), pk=restore_id)
        if request.method == "POST" and request.POST.get("post") == "yes":
            try:
                restore = services.undo_restore(restore=restore, acting_user=request.user)
            except BackupError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:  # the service writes the admin log entry
                self.message_user(request, _("Restore #%(id)s is undone: database %(database)s is back as it was "
                                             "before it.") % {"id": restore.pk, "database": restore.database},
                                  messages.SUCCESS)
            return HttpResponseRedirect(self.url("restore_status", restore.pk))
        context = self.console_context(
            request,
            title=_("Undo restore #%(id)s?") % {"id": restore.pk},
            restore=restore,
            can_undo=self.can_undo(request, restore),
            status_page=self.url("restore_status", restore.pk),
        )
        return TemplateResponse(request, TEMPLATES + "undo_confirmation.html", context)

    # Cleanup ----------------------------------------------------------------------------------

    def cleanup_view(self, request):
        """GET previews what a cleanup deletes; POST with post=yes deletes exactly that."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        form = CleanupForm(data if "retention_days" in data else None,
                           initial={"retention_days": setting("BACKUP_RETENTION_DAYS")})
        days = form.cleaned_data["retention_days"] if form.is_bound and form.is_valid() else None
        plan = None
        if not form.is_bound or days is not None:
            plan = services.plan_cleanup(retention_days=days)
        if request.method == "POST" and request.POST.get("post") == "yes" and plan is not None:
            try:
                done = services.cleanup_backups(
                    retention_days=days, acting_user=request.user, previewed=request.POST.get("plan", "")
                )
            except BackupError as exc:  # the plan changed since the preview: show it again
                self.message_user(request, str(exc), messages.WARNING)
            else:
                return self.cleanup_done(request, done)
        context = self.console_context(
            request,
            title=_("Clean up backups"),
            form=form,
            plan=plan,
            plan_signature=plan.signature if plan else "",
            deletes_anything=bool(plan and (plan.expired or plan.failed or plan.leftovers or plan.replaced)),
        )
        return TemplateResponse(request, TEMPLATES + "cleanup.html", context)

    def cleanup_done(self, request, done):
        self.message_user(
            request,
            _("Cleanup deleted %(backups)d backups and %(leftovers)d leftover files, freeing %(size)s.")
            % {"backups": len(done.expired) + len(done.failed), "leftovers": len(done.leftovers),
               "size": filesizeformat(done.bytes_freed)},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.url("changelist"))
