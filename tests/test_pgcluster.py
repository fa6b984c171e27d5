import psycopg2


def test_fresh_databases_are_separate_and_empty(pg_cluster):
    a, b = pg_cluster.new_database(), pg_cluster.new_database()
    assert a != b
    with psycopg2.connect(a) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int)")
    with psycopg2.connect(b) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
        assert cur.fetchone()[0] == 0
