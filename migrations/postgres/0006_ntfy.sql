-- A volunteer's ntfy topic (the self-hosted push server with phone apps):
-- offers are published there too, with Accept and Decline buttons.
ALTER TABLE volunteers ADD COLUMN ntfy_url TEXT;
