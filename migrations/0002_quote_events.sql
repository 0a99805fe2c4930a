-- 0002_quote_events.sql — each new quote is published on the channel `quotes` as JSON, for the
-- live page (GET /live) and any client of GET /events/quotes (lua/endpoints/live.lua). A NOTIFY
-- is delivered when the inserting transaction commits, never before and never if it rolls back.

CREATE FUNCTION publish_quote() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quotes', json_build_object(
        'id', NEW.id, 'pair', NEW.pair, 'bid', NEW.bid, 'ask', NEW.ask, 'ts', NEW.ts)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER quotes_publish AFTER INSERT ON quotes FOR EACH ROW EXECUTE FUNCTION publish_quote();
