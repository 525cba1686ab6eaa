-- The category tables of docs/wire-format.md section 3.2: the golden files
-- (test/golden/*.psgc, written by Python's stat_guard.wire) read as golden.json
-- describes them, every malformed table golden.json lists is refused, and
-- category_counts counts a window as docs/analysis.md says (the most frequent
-- categories, ties by their bytes, the rest pooled, NULLs missing, long text
-- shortened).
\set VERBOSITY terse
\set golden `cat test/golden/golden.json`
\set files `cd test/golden && for f in *.psgc; do printf '%s %s\n' "$f" "$(od -An -tx1 -v "$f" | tr -d ' \n')"; done`

CREATE TEMP TABLE golden AS SELECT :'golden'::jsonb AS j;
CREATE TEMP TABLE golden_file AS
SELECT split_part(line, ' ', 1) AS file, decode(split_part(line, ' ', 2), 'hex') AS bytes
FROM regexp_split_to_table(:'files', '\n') line WHERE line <> '';

SELECT count(*) >= 7 AS has_golden_tables
FROM golden, jsonb_each(j -> 'category_tables') e JOIN golden_file f ON f.file = e.value ->> 'file';

-- Each table reads as listed: the list of differing tables is empty.
SELECT e.key AS differs
FROM golden, jsonb_each(j -> 'category_tables') e JOIN golden_file f ON f.file = e.value ->> 'file'
WHERE category_counts_json(f.bytes) <> jsonb_build_object(
    'categories', e.value -> 'categories', 'other_count', e.value -> 'other_count',
    'other_distinct', e.value -> 'other_distinct', 'missing', e.value -> 'missing');

SELECT category_counts_json(bytes) FROM golden_file WHERE file = 'categories_small.psgc';

-- Every malformed table is refused with invalid_binary_representation.
DO $$
DECLARE
    c jsonb;
    total integer := 0;
    accepted integer := 0;
BEGIN
    FOR c IN SELECT jsonb_array_elements(j -> 'malformed_category_tables') FROM golden LOOP
        total := total + 1;
        BEGIN
            PERFORM category_counts_json(decode(c ->> 'hex', 'hex'));
            accepted := accepted + 1;
            RAISE NOTICE 'accepted: %', c ->> 'reason';
        EXCEPTION WHEN invalid_binary_representation THEN
            NULL;
        END;
    END LOOP;
    RAISE NOTICE 'every malformed table refused: %', total >= 30 AND accepted = 0;
END
$$;
SELECT category_counts_json('\x50534743'::bytea);

-- Counting a window.
SET pg_stat_guard.max_categories = 10;
CREATE TYPE category_test_tier AS ENUM ('free', 'pro', 'team');
CREATE TABLE category_test (ts timestamptz, city text, tier category_test_tier,
                            active boolean, code int, label char(6), note varchar, x float8);
INSERT INTO category_test
SELECT '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
       CASE WHEN g % 10 = 0 THEN NULL WHEN g % 3 = 0 THEN 'paris' WHEN g % 3 = 1 THEN 'lyon'
            ELSE 'c' || (g % 40) END,
       (ARRAY['free', 'pro', 'team'])[1 + g % 3]::category_test_tier,
       g % 4 = 0, g % 5, CASE WHEN g % 2 = 0 THEN 'ab' ELSE 'abcdef' END,
       CASE WHEN g % 50 = 0 THEN repeat('y', 300) WHEN g % 2 = 0 THEN repeat('z', 256) END,
       g
FROM generate_series(1, 1000) g;
-- outside the window: never counted
INSERT INTO category_test VALUES ('2026-01-02 00:00:00+00', 'late', 'free', true, 9, 'x', 'x', 0);

SELECT column_name, category_counts_json(categories)
FROM category_counts('category_test', 'ts', ARRAY['city', 'tier', 'active', 'code', 'label', 'note', 'x'],
                     '2026-01-01 00:00:00+00', '2026-01-02 00:00:00+00', ARRAY['code']);
-- the same bytes each time: a table is a function of the rows
SELECT count(DISTINCT categories) AS tables FROM (
    SELECT categories FROM category_counts('category_test', 'ts', ARRAY['city'],
                                           '2026-01-01', '2026-01-02')
    UNION ALL
    SELECT categories FROM category_counts('category_test', 'ts', ARRAY['city'],
                                           '2026-01-01', '2026-01-02')) t;

-- Columns that are neither numbers nor categories, and lists that do not fit.
SELECT * FROM category_counts('category_test', 'ts', ARRAY['x'], '2026-01-01', '2026-01-02', ARRAY['x']);
SELECT * FROM category_counts('category_test', 'ts', ARRAY['city'], '2026-01-01', '2026-01-02', ARRAY['code']);
SELECT * FROM category_counts('category_test', 'ts', ARRAY['ts'], '2026-01-01', '2026-01-02');
SELECT * FROM category_counts('category_test', 'ts', ARRAY['city'], '2026-01-02', '2026-01-01');
SELECT * FROM category_counts('category_test', 'ts', ARRAY['city'], NULL, '2026-01-01');

DROP TABLE category_test;
DROP TYPE category_test_tier;
RESET pg_stat_guard.max_categories;
