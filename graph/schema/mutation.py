"""The Mutation root: every mutation, in the schema's order. Each is declared, with its
input and payload, in the module of its noun (``graph/schema/mutations/``)."""

from __future__ import annotations

import strawberry

from graph.schema.mutations import (
    accounts,
    datasets,
    email,
    exports,
    files,
    models,
    moderation,
    notifications,
    versions,
)


@strawberry.type(description="Changes.")
class Mutation:
    sign_up = accounts.sign_up
    log_in = accounts.log_in
    log_out = accounts.log_out
    change_password = accounts.change_password
    create_model = models.create_model
    update_model = models.update_model
    create_model_version = versions.create_model_version
    update_model_version = versions.update_model_version
    start_model_file_upload = files.start_model_file_upload
    delete_model_file = files.delete_model_file
    set_primary_model_file = files.set_primary_model_file
    start_dataset_upload = datasets.start_dataset_upload
    publish_model_version = versions.publish_model_version
    set_dataset_visibility = datasets.set_dataset_visibility
    delete_dataset = datasets.delete_dataset
    delete_model = models.delete_model
    delete_model_version = versions.delete_model_version
    mark_notifications_read = notifications.mark_notifications_read
    set_email = email.set_email
    verify_email = email.verify_email
    set_email_preferences = email.set_email_preferences
    report_content = moderation.report_content
    take_down = moderation.take_down
    restore = moderation.restore
    suspend_user = moderation.suspend_user
    unsuspend_user = moderation.unsuspend_user
    dismiss_report = moderation.dismiss_report
    request_data_export = exports.request_data_export
    delete_account = accounts.delete_account
