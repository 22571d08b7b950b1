-- Run once by the postgres image on its first start (an empty data volume), as POSTGRES_USER.
-- Database-per-service (DESIGN.md): each service, and the gateway's key store, gets a
-- database of its own; nobody reads another service's tables. The schemas are created by
-- each service's Alembic history (`python -m services.common.migrate <name>`,
-- `python -m gateway.migrate`), not here.
--
-- On a shared or managed PostgreSQL, give each database its own login role too, e.g.
--   CREATE ROLE contacts LOGIN PASSWORD '...';
--   CREATE DATABASE contacts OWNER contacts;
-- and put that role in CONTACTS_DATABASE_URL (docs/production.md).

CREATE DATABASE contacts ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE orders ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE interactions ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE segmentation ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE gateway ENCODING 'UTF8' TEMPLATE template0;
