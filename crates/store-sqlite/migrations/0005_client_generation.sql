-- Version 5: a count of the changes to clients, which says when a cached client is stale.
--
-- Readers keep the clients they have read in memory, with the generation they read them at
-- (`ClientCache` in src/clients.rs): a request then reads this one row instead of the client's row
-- and its JSON columns. The triggers bump the count in the same transaction as the change,
-- whoever makes it (this process, another node on the same file, or a CLI command), so a
-- reader that sees the new count also sees the change.
CREATE TABLE client_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  INTEGER NOT NULL
);
INSERT INTO client_generation (id, generation) VALUES (1, 0);

CREATE TRIGGER clients_inserted AFTER INSERT ON clients
BEGIN
    UPDATE client_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER clients_updated AFTER UPDATE ON clients
BEGIN
    UPDATE client_generation SET generation = generation + 1 WHERE id = 1;
END;
-- Also fires for the rows a tenant's deletion takes with it (ON DELETE CASCADE).
CREATE TRIGGER clients_deleted AFTER DELETE ON clients
BEGIN
    UPDATE client_generation SET generation = generation + 1 WHERE id = 1;
END;
