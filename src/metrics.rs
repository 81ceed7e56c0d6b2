//! Every metric kedai exports, declared in one place with the `kedai_`
//! prefix: durations are `_seconds` histograms, failures are counters
//! labelled by cause. Other modules call the functions here and never name a
//! metric themselves.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const HTTP_REQUESTS: &str = "kedai_http_requests_total";
const HTTP_DURATION: &str = "kedai_http_request_duration_seconds";
const INGEST_MESSAGES: &str = "kedai_ingest_messages_total";
const INGEST_REJECTED: &str = "kedai_ingest_rejected_total";
const INGEST_DURATION: &str = "kedai_ingest_commit_duration_seconds";
const JOBS_FINISHED: &str = "kedai_jobs_finished_total";
const JOB_DURATION: &str = "kedai_job_duration_seconds";
const JOB_LEASE_FAILURES: &str = "kedai_job_lease_failures_total";
const QUEUE_JOBS: &str = "kedai_queue_jobs";
const JOB_LEASES_LOST: &str = "kedai_job_leases_lost_total";
const JOB_PANICS: &str = "kedai_job_panics_total";
const JOBS_GIVEN_UP: &str = "kedai_jobs_given_up_total";
const QUEUE_WORKERS: &str = "kedai_queue_workers_running";
const QUEUE_WORKER_RESTARTS: &str = "kedai_queue_worker_restarts_total";
const MODEL_IN_FLIGHT: &str = "kedai_model_in_flight";
const MODEL_REJECTED: &str = "kedai_model_rejected_total";
const MODEL_LOAD: &str = "kedai_model_load_seconds";
const MODEL_PANICS: &str = "kedai_model_worker_panics_total";
const MODEL_BATCH: &str = "kedai_model_batch_inputs";
const MODEL_TOKENS: &str = "kedai_model_tokens_total";
const MODEL_FORWARD: &str = "kedai_model_forward_duration_seconds";
const MODEL_REQUEST: &str = "kedai_model_request_duration_seconds";
const MODEL_QUEUE_WAIT: &str = "kedai_model_queue_wait_seconds";
const UNDERSTAND_RELOADS: &str = "kedai_understand_reloads_total";
const LEARNING_EVENTS: &str = "kedai_learning_events_total";
const UNDERSTAND_EXEMPLARS: &str = "kedai_understand_exemplars";
const AUTH_REFUSED: &str = "kedai_auth_refused_total";
const API_THROTTLED: &str = "kedai_api_throttled_total";
const HTTP_SHED: &str = "kedai_http_shed_total";
const WEBHOOKS: &str = "kedai_webhooks_total";
const WEBHOOK_DURATION: &str = "kedai_webhook_ack_duration_seconds";
const OUTBOX_DELIVERIES: &str = "kedai_outbox_deliveries_total";
const OUTBOX_DURATION: &str = "kedai_outbox_delivery_duration_seconds";
const OUTBOX_ROWS: &str = "kedai_outbox";
const OUTBOX_IN_DOUBT: &str = "kedai_outbox_in_doubt_checks_total";
const RECONCILED: &str = "kedai_reconciled_messages_total";
const RECONCILE_FAILURES: &str = "kedai_reconcile_failures_total";

/// Installs the process-wide Prometheus recorder once and returns its handle;
/// later calls (several servers in one test process) share it. Every
/// metric carries `instance`, the replica's name, set by the first call.
pub fn install(instance: &str) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ];
            let handle = PrometheusBuilder::new()
                .add_global_label("instance", instance)
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(MODEL_BATCH.into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        LEARNING_EVENTS,
        "The learning loop, by event (correction, route_correction, promoted, refused, \
         rolled_back, retrain_failed)."
    );
    describe_counter!(
        AUTH_REFUSED,
        "Requests refused by authentication or authorisation, by cause (missing, malformed, \
         unknown, expired, scope, operator, throttled)."
    );
    describe_counter!(
        API_THROTTLED,
        "Model requests refused by a tenant's fair share, by cause (rate, concurrency)."
    );
    describe_counter!(
        HTTP_SHED,
        "Requests refused with 503 because the server was at its concurrency limit."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route."
    );
    describe_counter!(
        INGEST_MESSAGES,
        "Inbound messages acknowledged, by result (stored, duplicate)."
    );
    describe_counter!(
        INGEST_REJECTED,
        "Inbound messages refused, by cause; nothing was stored."
    );
    describe_histogram!(
        INGEST_DURATION,
        metrics::Unit::Seconds,
        "Time to commit an inbound message durably."
    );
    describe_counter!(
        JOBS_FINISHED,
        "Job attempts finished, by kind and outcome (done, retry, dead, give_up_retry)."
    );
    describe_histogram!(
        JOB_DURATION,
        metrics::Unit::Seconds,
        "Time a job handler ran, by kind."
    );
    describe_counter!(JOB_LEASE_FAILURES, "Failed attempts to lease jobs.");
    describe_gauge!(QUEUE_JOBS, "Jobs in the durable queue, by state.");
    describe_counter!(
        JOB_LEASES_LOST,
        "Job runs stopped because their lease was lost (renewal found another owner or the \
         job gone); their outcome was not recorded."
    );
    describe_counter!(
        JOB_PANICS,
        "Job handler runs that panicked, by kind; the job failed (and is retried) and the \
         worker lived on."
    );
    describe_counter!(
        JOBS_GIVEN_UP,
        "Jobs given up on, by kind, cause (failed, lease_expired, too_old) and outcome \
         (handed_off: the give-up hook ran; retry: it will run again; abandoned: it failed \
         for good, the job is dead without it)."
    );
    describe_gauge!(
        QUEUE_WORKERS,
        "Queue workers running; below queue.workers while a worker is being restarted."
    );
    describe_counter!(
        QUEUE_WORKER_RESTARTS,
        "Queue workers that ended unexpectedly (a panic) and were restarted."
    );
    describe_gauge!(
        MODEL_IN_FLIGHT,
        "Requests admitted to a model and not yet answered (queued plus running)."
    );
    describe_counter!(
        MODEL_REJECTED,
        "Model requests not run, by model and reason (overloaded, unavailable, invalid, \
         unknown_model, cancelled)."
    );
    describe_gauge!(
        MODEL_LOAD,
        metrics::Unit::Seconds,
        "Time the model took to load."
    );
    describe_counter!(
        MODEL_PANICS,
        "Requests that panicked inside a model worker; the worker kept serving."
    );
    describe_histogram!(MODEL_BATCH, "Inputs per embedding forward batch, by model.");
    describe_counter!(
        MODEL_TOKENS,
        "Tokens processed, by model and kind (input, prompt, completion; guessed and \
         guess_accepted count the completion tokens guessed from the prompt and those the \
         model kept); divide its rate by kedai_model_forward_duration_seconds_sum's for \
         tokens per second."
    );
    describe_histogram!(
        MODEL_FORWARD,
        metrics::Unit::Seconds,
        "Time spent in forward passes, by model and phase (embed, prefill, decode)."
    );
    describe_histogram!(
        MODEL_REQUEST,
        metrics::Unit::Seconds,
        "Time from admission to answer, by model and outcome (ok, error, cancelled)."
    );
    describe_histogram!(
        MODEL_QUEUE_WAIT,
        metrics::Unit::Seconds,
        "Time a model request waited in its queue before its worker took it."
    );
    describe_counter!(
        UNDERSTAND_RELOADS,
        "Trainings of the understand stage's classifiers from the exemplar folders, by trigger \
         (start, api, watch) and outcome (ok, error)."
    );
    describe_gauge!(
        UNDERSTAND_EXEMPLARS,
        "Exemplars the classifiers in use were trained on, by kind (intent, sentiment)."
    );
    describe_counter!(
        WEBHOOKS,
        "Marketplace pushes answered, by platform and outcome (stored, duplicate, ignored, \
         bad_signature, replay, malformed, unknown_shop, error)."
    );
    describe_histogram!(
        WEBHOOK_DURATION,
        metrics::Unit::Seconds,
        "Time from a push's arrival to its answer (after its messages are committed), by platform."
    );
    describe_counter!(
        OUTBOX_DELIVERIES,
        "Outbox delivery attempts, by kind (reply, event) and outcome (delivered, part, retry, \
         deferred, dead)."
    );
    describe_histogram!(
        OUTBOX_DURATION,
        metrics::Unit::Seconds,
        "Time one outbox delivery attempt took, by kind."
    );
    describe_gauge!(
        OUTBOX_ROWS,
        "Outbox deliveries (replies and events), by state (pending, sending, sent, dead)."
    );
    describe_counter!(
        OUTBOX_IN_DOUBT,
        "Checks of the platform before resending a reply whose earlier attempt may have landed, \
         by result (found, not_found)."
    );
    describe_counter!(
        RECONCILED,
        "Messages recovered by reconciliation (missed pushes), by platform."
    );
    describe_counter!(
        RECONCILE_FAILURES,
        "Reconciliation runs of a shop that failed, by platform."
    );
}

pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method.to_owned(), "status" => status.to_string()).increment(1);
    histogram!(HTTP_DURATION, "route" => route.to_owned()).record(elapsed.as_secs_f64());
}

pub fn ingest_stored(duplicate: bool, elapsed: Duration) {
    let result = if duplicate { "duplicate" } else { "stored" };
    counter!(INGEST_MESSAGES, "result" => result).increment(1);
    histogram!(INGEST_DURATION).record(elapsed.as_secs_f64());
}

pub fn ingest_rejected(cause: &'static str) {
    counter!(INGEST_REJECTED, "cause" => cause).increment(1);
}

pub fn job_finished(kind: &str, outcome: &'static str) {
    counter!(JOBS_FINISHED, "kind" => kind.to_owned(), "outcome" => outcome).increment(1);
}

pub fn job_duration(kind: &str, elapsed: Duration) {
    histogram!(JOB_DURATION, "kind" => kind.to_owned()).record(elapsed.as_secs_f64());
}

pub fn job_lease_failed() {
    counter!(JOB_LEASE_FAILURES).increment(1);
}

pub fn queue_jobs(counts: &crate::store::JobCounts) {
    for (state, n) in [
        ("queued", counts.queued),
        ("leased", counts.leased),
        ("done", counts.done),
        ("dead", counts.dead),
    ] {
        gauge!(QUEUE_JOBS, "state" => state).set(n as f64);
    }
}

pub fn job_lease_lost(kind: &str) {
    counter!(JOB_LEASES_LOST, "kind" => kind.to_owned()).increment(1);
}

pub fn job_panicked(kind: &str) {
    counter!(JOB_PANICS, "kind" => kind.to_owned()).increment(1);
}

pub fn job_given_up(kind: &str, cause: &'static str, outcome: &'static str) {
    counter!(JOBS_GIVEN_UP, "kind" => kind.to_owned(), "cause" => cause, "outcome" => outcome)
        .increment(1);
}

pub fn queue_workers_running(running: usize) {
    gauge!(QUEUE_WORKERS).set(running as f64);
}

pub fn queue_worker_restarted() {
    counter!(QUEUE_WORKER_RESTARTS).increment(1);
}

pub fn model_in_flight(model: &str, delta: f64) {
    gauge!(MODEL_IN_FLIGHT, "model" => model.to_owned()).increment(delta);
}

pub fn model_rejected(model: &str, reason: &'static str) {
    counter!(MODEL_REJECTED, "model" => model.to_owned(), "reason" => reason).increment(1);
}

pub fn model_loaded(model: &str, elapsed: Duration) {
    gauge!(MODEL_LOAD, "model" => model.to_owned()).set(elapsed.as_secs_f64());
}

pub fn model_panicked(model: &str) {
    counter!(MODEL_PANICS, "model" => model.to_owned()).increment(1);
}

/// One forward batch: `inputs` texts (1 for a chat prefill) holding `tokens`
/// tokens, run in `elapsed`. `phase` is `embed` or `prefill`.
pub fn model_batch(
    model: &str,
    inputs: usize,
    tokens: usize,
    phase: &'static str,
    elapsed: Duration,
) {
    let kind = if phase == "embed" { "input" } else { "prompt" };
    if phase == "embed" {
        histogram!(MODEL_BATCH, "model" => model.to_owned()).record(inputs as f64);
    }
    model_tokens(model, kind, tokens);
    model_busy(model, phase, elapsed);
}

pub fn model_tokens(model: &str, kind: &'static str, tokens: usize) {
    counter!(MODEL_TOKENS, "model" => model.to_owned(), "kind" => kind).increment(tokens as u64);
}

pub fn model_busy(model: &str, phase: &'static str, elapsed: Duration) {
    histogram!(MODEL_FORWARD, "model" => model.to_owned(), "phase" => phase)
        .record(elapsed.as_secs_f64());
}

pub fn model_request(model: &str, outcome: &'static str, elapsed: Duration) {
    histogram!(MODEL_REQUEST, "model" => model.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

pub fn model_queue_wait(model: &str, waited: Duration) {
    histogram!(MODEL_QUEUE_WAIT, "model" => model.to_owned()).record(waited.as_secs_f64());
}

pub fn understand_reload(trigger: &'static str, outcome: &'static str) {
    counter!(UNDERSTAND_RELOADS, "trigger" => trigger, "outcome" => outcome).increment(1);
}

pub fn learning_event(event: &'static str) {
    counter!(LEARNING_EVENTS, "event" => event).increment(1);
}

pub fn understand_exemplars(intents: usize, sentiment: usize) {
    gauge!(UNDERSTAND_EXEMPLARS, "kind" => "intent").set(intents as f64);
    gauge!(UNDERSTAND_EXEMPLARS, "kind" => "sentiment").set(sentiment as f64);
}

pub fn auth_refused(cause: &'static str) {
    counter!(AUTH_REFUSED, "cause" => cause).increment(1);
}

pub fn api_throttled(cause: &'static str) {
    counter!(API_THROTTLED, "cause" => cause).increment(1);
}

pub fn http_shed() {
    counter!(HTTP_SHED).increment(1);
}

pub fn webhook(platform: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!(WEBHOOKS, "platform" => platform, "outcome" => outcome).increment(1);
    histogram!(WEBHOOK_DURATION, "platform" => platform).record(elapsed.as_secs_f64());
}

pub fn outbox_delivery(kind: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!(OUTBOX_DELIVERIES, "kind" => kind, "outcome" => outcome).increment(1);
    histogram!(OUTBOX_DURATION, "kind" => kind).record(elapsed.as_secs_f64());
}

pub fn outbox_in_doubt(result: &'static str) {
    counter!(OUTBOX_IN_DOUBT, "result" => result).increment(1);
}

pub fn reconciled(platform: &'static str, messages: usize) {
    counter!(RECONCILED, "platform" => platform).increment(messages as u64);
}

pub fn reconcile_failed(platform: &'static str) {
    counter!(RECONCILE_FAILURES, "platform" => platform).increment(1);
}

pub fn outbox_counts(counts: &crate::store::OutboxCounts) {
    for (state, n) in [
        ("pending", counts.pending),
        ("sending", counts.sending),
        ("sent", counts.sent),
        ("dead", counts.dead),
    ] {
        gauge!(OUTBOX_ROWS, "state" => state).set(n as f64);
    }
}
