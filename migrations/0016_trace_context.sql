-- The W3C trace context (`traceparent`) of the request or job run that
-- queued a job or an outbox row, so whoever leases it, on any replica,
-- continues that trace. Empty when no trace was exported.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
