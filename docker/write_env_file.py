"""Write this process's environment to a file that config/settings.py reads (DJANGO_ENV_FILE).

Cron starts its jobs with an almost empty environment, so the cron container hands them its
settings this way. Values are single-quoted (django-environ reads them verbatim); a value with a
line break cannot be written and is reported. The file is created 0600.
"""

import os
import sys

# What cron itself, the shell or the image decide for the job; the rest is configuration.
SKIP = {"HOME", "HOSTNAME", "OLDPWD", "PATH", "PWD", "SHLVL", "TERM", "_", "CRONTAB_COMMAND_PREFIX",
        "CRONTAB_COMMAND_SUFFIX", "DJANGO_ENV_FILE"}


def main(path: str) -> int:
    lines, skipped = [], []
    for name, value in sorted(os.environ.items()):
        if name in SKIP:
            continue
        if "\n" in value or "\r" in value:
            skipped.append(name)
            continue
        lines.append(f"{name}='{value}'\n")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as env_file:
        env_file.writelines(lines)
    for name in skipped:
        print(f"{name} holds a line break and is not passed to the cron jobs.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
