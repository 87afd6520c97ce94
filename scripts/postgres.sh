# Sourced by scripts/test: makes sure a local PostgreSQL answers on 127.0.0.1:5432 and that a
# fresh `latchkey_test` database exists (each test then works in a schema of its own).

ensure_local_postgres() {
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        if ! command -v pg_ctlcluster >/dev/null; then
            if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
                echo "== installing PostgreSQL (Debian package postgresql)"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
            else
                echo "PostgreSQL is not installed: install it, or set LATCHKEY_TEST_POSTGRES_URL" >&2
                return 1
            fi
        fi
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n1)
        echo "== starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        for _ in $(seq 1 50); do
            pg_isready -q -h 127.0.0.1 -p 5432 && break
            sleep 0.2
        done
    fi
    local psql=(psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres)
    if ! "${psql[@]}" -c 'SELECT 1' >/dev/null 2>&1; then
        # A fresh Debian install allows only peer authentication for postgres over the socket.
        if [[ $(id -u) -eq 0 ]] && command -v runuser >/dev/null; then
            runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD NULL" >/dev/null
            local hba
            hba=$(runuser -u postgres -- psql -tA -c 'SHOW hba_file')
            if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
                sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
                runuser -u postgres -- psql -q -c 'SELECT pg_reload_conf()' >/dev/null
            fi
        fi
    fi
    "${psql[@]}" -c 'DROP DATABASE IF EXISTS latchkey_test WITH (FORCE)' -c 'CREATE DATABASE latchkey_test' >/dev/null
}
