#!/bin/sh
# Run by the postgres image once, when it initialises an empty data volume: create the application's
# role and database named in DATABASE_URL. The role owns its database, may create databases and end
# other roles' sessions (so that a restore is done by swap), but is no superuser: a restore runs the archive's functions (in CHECK constraints, say) with the rights
# of the role that restores, and a superuser's would hand them the whole server.
set -eu

# Print part $1 (1 user, 2 password, 3 database) of postgres://USER:PASSWORD@HOST:PORT/NAME, decoded.
# The URL goes through stdin, never argv; perl-base is in every Debian image.
url_part() {
    printf '%s' "$DATABASE_URL" | perl -e '
        my $url = <STDIN>;
        $url =~ m{^postgres(?:ql)?://([^:@/]+):([^@/]*)@[^/]+/([^?/]+)}
            or die "DATABASE_URL must be postgres://USER:PASSWORD\@db:5432/NAME\n";
        my $part = (undef, $1, $2, $3)[$ARGV[0]];
        $part =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
        print $part;' "$1"
}

APP_DB_USER=$(url_part 1)
APP_DB_PASSWORD=$(url_part 2)
APP_DB_NAME=$(url_part 3)
export APP_DB_USER APP_DB_PASSWORD APP_DB_NAME

psql --no-psqlrc --set=ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv app_user APP_DB_USER
\getenv app_password APP_DB_PASSWORD
\getenv app_db APP_DB_NAME
CREATE ROLE :"app_user" LOGIN CREATEDB PASSWORD :'app_password';
-- POSTGRES_DB may have created it already, owned by the superuser.
SELECT format('CREATE DATABASE %I', :'app_db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db')
\gexec
ALTER DATABASE :"app_db" OWNER TO :"app_user";
-- A restore by swap ends the sessions on the database at the swap moment (README, Restores).
GRANT pg_signal_backend TO :"app_user";
SQL
