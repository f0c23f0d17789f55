-- IMAP UIDs and folder counters (issue 3).
--
-- Every folder has a UIDVALIDITY, fixed at its creation and never reused
-- (a sequence that starts at the migration's Unix time, so a reinstalled
-- database does not hand out the values of the old one), and the next UID
-- it will give. Every message has a UID in its folder: given when it is
-- inserted and again when it is moved, never reused. folders.total counts
-- the messages not deleted. Triggers keep all of it, whoever writes.
DO $$
BEGIN
	EXECUTE format('CREATE SEQUENCE folder_uid_validity MINVALUE 1 MAXVALUE 4294967295 START %s CYCLE',
		extract(epoch FROM now())::bigint);
END $$;

ALTER TABLE folders
	ADD COLUMN uid_validity bigint NOT NULL DEFAULT nextval('folder_uid_validity'),
	ADD COLUMN uid_next bigint NOT NULL DEFAULT 1,
	ADD COLUMN total bigint NOT NULL DEFAULT 0;

ALTER TABLE messages ADD COLUMN uid bigint;
UPDATE messages m SET uid = n.uid
FROM (SELECT id, row_number() OVER (PARTITION BY folder_id ORDER BY id) AS uid FROM messages) n
WHERE m.id = n.id;
UPDATE folders f SET
	uid_next = coalesce((SELECT max(uid) + 1 FROM messages m WHERE m.folder_id = f.id), 1),
	total = (SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND m.deleted_at IS NULL);
ALTER TABLE messages ALTER COLUMN uid SET NOT NULL;

-- Listing (API pages, IMAP sequence numbers) walks a folder in UID order.
CREATE UNIQUE INDEX messages_folder_uid ON messages(folder_id, uid) WHERE deleted_at IS NULL;
DROP INDEX messages_folder;

-- A new message takes its folder's next UID and counts in its total. A row
-- that comes with its UID is a copy of one already counted (a restore by
-- pg_restore): it is left as it is.
CREATE FUNCTION messages_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.uid IS NOT NULL THEN
		RETURN NEW;
	END IF;
	UPDATE folders SET uid_next = uid_next + 1, total = total + (NEW.deleted_at IS NULL)::int
	WHERE id = NEW.folder_id
	RETURNING uid_next - 1 INTO NEW.uid;
	RETURN NEW;
END $$;
CREATE TRIGGER messages_insert BEFORE INSERT ON messages
	FOR EACH ROW EXECUTE FUNCTION messages_insert();

-- A message moved to another folder takes a new UID there; totals follow
-- moves, deletes and undeletes. Both folder rows are locked in id order, so
-- that two moves in opposite directions cannot deadlock.
CREATE FUNCTION messages_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM 1 FROM folders WHERE id IN (OLD.folder_id, NEW.folder_id) ORDER BY id FOR UPDATE;
	UPDATE folders SET total = total - 1 WHERE id = OLD.folder_id AND OLD.deleted_at IS NULL;
	IF NEW.folder_id <> OLD.folder_id THEN
		UPDATE folders SET uid_next = uid_next + 1, total = total + (NEW.deleted_at IS NULL)::int
		WHERE id = NEW.folder_id
		RETURNING uid_next - 1 INTO NEW.uid;
	ELSE
		UPDATE folders SET total = total + 1 WHERE id = NEW.folder_id AND NEW.deleted_at IS NULL;
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER messages_update BEFORE UPDATE OF folder_id, deleted_at ON messages
	FOR EACH ROW WHEN (OLD.folder_id IS DISTINCT FROM NEW.folder_id OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
	EXECUTE FUNCTION messages_update();

-- A message removed without being deleted first leaves its folder's total.
CREATE FUNCTION messages_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.deleted_at IS NULL THEN
		UPDATE folders SET total = total - 1 WHERE id = OLD.folder_id;
	END IF;
	RETURN OLD;
END $$;
CREATE TRIGGER messages_delete AFTER DELETE ON messages
	FOR EACH ROW EXECUTE FUNCTION messages_delete();
