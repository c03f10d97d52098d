"""The backup console: a customized BackupJob admin that runs every operation through the services."""

import json

from django.contrib import admin, messages
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from backups_app import archives, services
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus, BackupTrigger

from .display import ACTIVE_STATUSES, elapsed_text, live_backup, seconds_text, when
from .forms import RestoreForm
from .stats import stats_panel
from .views import BackupConsoleViews


@admin.register(BackupJob)
class BackupJobAdmin(BackupConsoleViews, admin.ModelAdmin):
    list_display = [
        "id", "status_badge", "database_short", "trigger_short", "created_short", "duration", "size",
        "drill_short", "requested_by_short", "description_short",
    ]
    list_display_links = ["id"]
    list_filter = ["status", "trigger", "database", "drill_result"]
    date_hierarchy = "created_at"
    search_fields = ["description", "file_name"]
    list_per_page = 50
    show_full_result_count = False  # one COUNT(*) less on every filtered page
    actions = ["restore_selected", "verify_selected", "drill_selected", "retry_selected"]
    fieldsets = [
        (None, {"fields": ["status_badge", "database", "engine", "trigger", "description", "requested_by_name",
                           "live_phase", "error_text", "warning"]}),
        (gettext_lazy("Timing"), {"fields": ["created_at", "started", "finished", "duration"]}),
        (gettext_lazy("Archive"), {"fields": ["live_file_name", "compression", "encryption", "size", "bytes_written_text",
                                              "checksum", "trusted", "server_version", "tool_version"]}),
        (gettext_lazy("Process"), {"fields": ["hostname", "pid"]}),
        (gettext_lazy("Restore drill"), {"fields": ["last_drill_text", "drill_tables", "drill_history"]}),
        (gettext_lazy("Restores from this backup"), {"fields": ["restore_history"]}),
        (gettext_lazy("Manifest"), {"fields": ["manifest"]}),
    ]
    readonly_fields = [name for _title, options in fieldsets for name in options["fields"]]

    class Media:
        css = {"all": ["backups_app/console.css"]}
        js = ["backups_app/console.js"]

    # Permissions ------------------------------------------------------------------------------

    def _has_model_permission(self, request, action):
        return request.user.has_perm("%s.%s" % (self.opts.app_label, get_permission_codename(action, self.opts)))

    def has_add_permission(self, request):
        return False  # backups are made through the create form (create_view), never the plain add form

    def has_change_permission(self, request, obj=None):
        return False  # the catalog records what happened: the detail page is read-only

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status in ACTIVE_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    def has_create_permission(self, request):
        return self._has_model_permission(request, "add")

    def has_restore_permission(self, request):
        return self._has_model_permission(request, "restore")

    def has_download_permission(self, request):
        return self._has_model_permission(request, "download")

    def has_verify_permission(self, request):
        return self.has_view_permission(request)

    # The change list ---------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, job):
        return live_backup(job, "status")

    @admin.display(description=gettext_lazy("duration"))
    def duration(self, job):
        return live_backup(job, "duration")

    @admin.display(description=gettext_lazy("size"), ordering="size_bytes")
    def size(self, job):
        return live_backup(job, "size")

    # Short labels and cells keep the list within a 1280 px screen; the full text is in each title.

    @admin.display(description=gettext_lazy("trigger"), ordering="trigger")
    def trigger_short(self, job):
        short = {BackupTrigger.PRE_RESTORE_SAFETY: _("safety")}.get(job.trigger, job.get_trigger_display().lower())
        return format_html('<span title="{}">{}</span>', job.get_trigger_display(), short)

    @admin.display(description=gettext_lazy("database"), ordering="database")
    def database_short(self, job):
        return job.database

    @admin.display(description=gettext_lazy("created"), ordering="created_at")
    def created_short(self, job):
        return formats.date_format(timezone.localtime(job.created_at), "SHORT_DATETIME_FORMAT")

    @admin.display(description=gettext_lazy("by"), ordering="requested_by_name")
    def requested_by_short(self, job):
        return self.clipped(job.requested_by_name)

    @admin.display(description=gettext_lazy("description"))
    def description_short(self, job):
        return self.clipped(job.description)

    @staticmethod
    def clipped(text):
        """Render text that console.css cuts to its cell's width with an ellipsis; the title holds all of it."""
        return format_html('<span class="backup-clipped" title="{}">{}</span>', text, text) if text else "-"

    def changelist_view(self, request, extra_context=None):
        # The list only reads (the workers mark dead jobs), in the same few queries whatever the size of
        # the catalog.
        extra_context = {
            **(extra_context or {}),
            "stats": stats_panel(),
            "status_url": self.url("status"),
            "has_create_permission": self.has_create_permission(request),
            "has_cleanup_permission": self.has_delete_permission(request),
        }
        return super().changelist_view(request, extra_context)

    # The detail page ---------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("started"))
    def started(self, job):
        return live_backup(job, "started")

    @admin.display(description=gettext_lazy("finished"))
    def finished(self, job):
        return live_backup(job, "finished")

    @admin.display(description=gettext_lazy("file name"))
    def live_file_name(self, job):
        return live_backup(job, "file_name")

    @admin.display(description=gettext_lazy("bytes written so far"))
    def bytes_written_text(self, job):
        return live_backup(job, "bytes_written")

    @admin.display(description=gettext_lazy("SHA-256"))
    def checksum(self, job):
        return live_backup(job, "checksum_full")

    @admin.display(description=gettext_lazy("phase"))
    def live_phase(self, job):
        return live_backup(job, "phase")

    @admin.display(description=gettext_lazy("error"))
    def error_text(self, job):
        return live_backup(job, "error")

    @admin.display(description=gettext_lazy("restores"))
    def restore_history(self, job):
        restores = job.restores.select_related("safety_backup")
        if not restores:
            return _("Never restored.")
        rows = format_html_join(
            "", '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (self.url("restore_status", restore.pk), restore.pk, restore.database, restore.get_status_display(),
                 when(restore.started_at), when(restore.finished_at), restore.requested_by_name or "-",
                 restore.error or (f"#{restore.safety_backup_id}" if restore.safety_backup_id else "-"))
                for restore in restores
            ),
        )
        header = format_html_join("", "<th>{}</th>", (
            (_("restore"),), (_("into"),), (_("status"),), (_("started"),), (_("finished"),), (_("by"),),
            (_("safety backup or error"),),
        ))
        return format_html('<table class="backup-restores"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', header, rows)

    @admin.display(description=gettext_lazy("drill"), ordering="drill_result")
    def drill_short(self, job):
        if not job.drill_result:
            return "-"
        return format_html('<span class="drill-{}" title="{}">{}</span>', job.drill_result,
                           _("Restore drill finished %(when)s") % {"when": when(job.drilled_at)},
                           job.get_drill_result_display().lower())

    @admin.display(description=gettext_lazy("last drill"))
    def last_drill_text(self, job):
        drill = job.last_drill
        if drill is None:
            return _("Never drilled: nothing has proven yet that this backup restores (manage.py backup_drill %(id)s).") % {
                "id": job.pk}
        text = _("%(status)s on %(when)s: restored in %(restore)s, whole drill %(total)s.") % {
            "status": drill.get_status_display(), "when": when(drill.finished_at),
            "restore": seconds_text(drill.restore_seconds) if drill.restore_seconds is not None else "-",
            "total": elapsed_text(drill.started_at, drill.finished_at)}
        return format_html("{}<br>{}", text, drill.error) if drill.error else text

    @admin.display(description=gettext_lazy("rows per table"))
    def drill_tables(self, job):
        drill = job.last_drill
        if drill is None or not drill.tables:
            return "-"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (table, counts["archive"], "-" if counts["restored"] is None else counts["restored"],
             _("ok") if counts["restored"] == counts["archive"] else _("differs"))
            for table, counts in drill.tables.items()
        ))
        checks = format_html_join("", "<tr><td colspan=\"3\"><code>{}</code></td><td>{}</td></tr>", (
            (check["query"], check["result"]) for check in drill.failed_checks
        ))
        header = format_html_join("", "<th>{}</th>", ((_("table"),), (_("in the archive"),), (_("restored"),), ("",)))
        return format_html('<table class="backup-restores"><thead><tr>{}</tr></thead><tbody>{}{}</tbody></table>',
                           header, rows, checks)

    @admin.display(description=gettext_lazy("drills"))
    def drill_history(self, job):
        drills = list(job.drills.all()[:20])
        if not drills:
            return "-"
        return format_html_join(", ", "#{} {} ({})", (
            (drill.pk, drill.get_status_display().lower(), when(drill.finished_at or drill.created_at)) for drill in drills
        ))

    @admin.display(description=gettext_lazy("manifest"))
    def manifest(self, job):
        if not job.file_name or job.status in ACTIVE_STATUSES or job.status == BackupStatus.FAILED:
            return "-"
        try:
            manifest = archives.read_manifest(job.file_name + archives.MANIFEST_SUFFIX)
        except BackupError as exc:
            return str(exc)
        return format_html('<pre class="backup-manifest">{}</pre>', json.dumps(manifest, indent=2, sort_keys=True))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "status_url": self.url("status"),
            "has_download_permission": self.has_download_permission(request),
            "has_restore_permission": self.has_restore_permission(request),
            "has_verify_permission": self.has_verify_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # Delete: the archive and the manifest go with the record ----------------------------------

    def get_deleted_objects(self, objs, request):
        """Name the files that go with the records on Django's delete confirmation pages."""
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        storage = archives.backup_storage()
        files = [
            format_html(_("File {name} of backup #{id}"), name=format_html("<code>{}</code>", name), id=job.pk)
            for job in objs if job.file_name
            for name in (job.file_name, job.file_name + archives.MANIFEST_SUFFIX) if storage.exists(name)
        ]
        if files:
            model_count[_("archive and manifest files")] = len(files)
        return [*to_delete, *files], model_count, perms_needed, protected

    def response_delete(self, request, obj_display, obj_id):
        # Django sends whoever may not change the model to the admin's home page; nobody may change a
        # backup here, but whoever deleted one can see the list.
        response = super().response_delete(request, obj_display, obj_id)
        if isinstance(response, HttpResponseRedirect) and self.has_view_permission(request):
            return HttpResponseRedirect(add_preserved_filters(
                {"preserved_filters": self.get_preserved_filters(request), "opts": self.opts}, self.url("changelist")
            ))
        return response

    def log_deletions(self, request, queryset):
        pass  # services.delete_backup writes the entry, and only for a backup it did delete

    def delete_model(self, request, obj):
        self.delete_queryset(request, [obj])

    def delete_queryset(self, request, queryset):
        # The service's rules, the same as backup_delete's: a backup that runs or that a restore reads stays.
        for job in queryset:
            try:
                services.delete_backup(backup=job, acting_user=request.user)
            except BackupError as exc:
                self.message_user(request, str(exc), messages.ERROR)

    # Actions ----------------------------------------------------------------------------------

    @admin.action(permissions=["restore"], description=gettext_lazy("Restore the selected backup…"))
    def restore_selected(self, request, queryset):
        """Like delete_selected: the first POST shows the confirmation page, the POST back with post=yes restores."""
        if len(queryset) != 1:
            self.message_user(request, _("Select exactly one backup to restore."), messages.WARNING)
            return None
        backup = queryset[0]
        if not request.POST.get("post"):
            return self.restore_confirmation(request, backup, RestoreForm(backup=backup))
        if not self.has_restore_permission(request):
            raise PermissionDenied
        form = RestoreForm(request.POST, backup=backup)
        if not form.is_valid():
            return self.restore_confirmation(request, backup, form)
        try:
            restore = services.request_restore(
                backup=backup,
                database=form.cleaned_data["database"],
                safety_backup=form.cleaned_data["safety_backup"],
                terminate_sessions=form.cleaned_data["terminate_sessions"],
                trust_archive=form.cleaned_data.get("trust_archive", False),
                acting_user=request.user,
                strategy=form.cleaned_data["strategy"],
                jobs=form.cleaned_data["jobs"],
                into=form.cleaned_data["into"],
                tables=form.cleaned_data["tables"],
            )
        except BackupError as exc:
            form.add_error(None, str(exc))
            return self.restore_confirmation(request, backup, form)
        # The LogEntry is written by the task once the restore has finished: restoring the application's
        # own database puts the LogEntry table back to the backup's state.
        self.message_user(
            request,
            _("Restore #%(id)s of backup #%(backup)s into %(database)s is queued; this page follows it.")
            % {"id": restore.pk, "backup": backup.pk, "database": restore.database},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.url("restore_status", restore.pk))

    @admin.action(permissions=["create"], description=gettext_lazy("Retry the selected failed backups"))
    def retry_selected(self, request, queryset):
        for job in queryset:
            try:
                new = services.retry_backup(backup=job, acting_user=request.user)
            except BackupError as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            self.message_user(
                request, _("Backup #%(id)s is queued again as backup #%(new)s.") % {"id": job.pk, "new": new.pk},
                messages.SUCCESS,
            )

    @admin.action(permissions=["restore"], description=gettext_lazy("Drill the selected backups (restore into a scratch database)"))
    def drill_selected(self, request, queryset):
        for job in queryset:
            self.drill_and_report(request, job)

    @admin.action(permissions=["verify"], description=gettext_lazy("Verify the selected backups' archives"))
    def verify_selected(self, request, queryset):
        for job in queryset:
            self.verify_and_report(request, job)
