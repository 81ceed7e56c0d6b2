-- Job lanes: every job starts in the fast lane; a buyer message whose
-- answer needs the chat model moves to the draft lane, which workers of its
-- own take, so answers from records and the knowledge base never wait
-- behind drafts.
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'fast'
    CHECK (lane IN ('fast', 'draft'));
