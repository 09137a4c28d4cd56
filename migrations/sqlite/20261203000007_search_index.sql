-- Search indexes (issue 25): substring search over file names and batch authors and messages
-- through FTS5 trigram indexes, so that a search is an index lookup, not a scan of every name.
-- The trigram tables mirror their content tables through triggers (external content). A search
-- still filters the rows it finds with the exact LIKE, so the index only narrows; after a
-- VACUUM (which may renumber batch_files' implicit rowids) run
-- `INSERT INTO batch_files_search(batch_files_search) VALUES ('rebuild')`.
CREATE VIRTUAL TABLE batch_files_search USING fts5(
    filename, content = 'batch_files', content_rowid = 'rowid', tokenize = 'trigram'
);
CREATE TRIGGER batch_files_search_insert AFTER INSERT ON batch_files BEGIN
    INSERT INTO batch_files_search (rowid, filename) VALUES (new.rowid, new.filename);
END;
CREATE TRIGGER batch_files_search_delete AFTER DELETE ON batch_files BEGIN
    INSERT INTO batch_files_search (batch_files_search, rowid, filename) VALUES ('delete', old.rowid, old.filename);
END;
CREATE TRIGGER batch_files_search_update AFTER UPDATE ON batch_files BEGIN
    INSERT INTO batch_files_search (batch_files_search, rowid, filename) VALUES ('delete', old.rowid, old.filename);
    INSERT INTO batch_files_search (rowid, filename) VALUES (new.rowid, new.filename);
END;
INSERT INTO batch_files_search (batch_files_search) VALUES ('rebuild');

CREATE VIRTUAL TABLE batches_search USING fts5(
    author, message, content = 'batches', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER batches_search_insert AFTER INSERT ON batches BEGIN
    INSERT INTO batches_search (rowid, author, message) VALUES (new.id, new.author, new.message);
END;
CREATE TRIGGER batches_search_delete AFTER DELETE ON batches BEGIN
    INSERT INTO batches_search (batches_search, rowid, author, message) VALUES ('delete', old.id, old.author, old.message);
END;
CREATE TRIGGER batches_search_update AFTER UPDATE ON batches BEGIN
    INSERT INTO batches_search (batches_search, rowid, author, message) VALUES ('delete', old.id, old.author, old.message);
    INSERT INTO batches_search (rowid, author, message) VALUES (new.id, new.author, new.message);
END;
INSERT INTO batches_search (batches_search) VALUES ('rebuild');
