"""`modelserve`: the gateway's calls from a shell, over `Client`. Scripts get JSON on
stdout (the default when stdout is not a terminal); people get tables for listings and a
chat's tokens as they stream (the default on a terminal; --output table|json|text
chooses). Progress (uploads, registrations, jobs, a server starting) and errors go to
stderr.

    modelserve login [--username U] [--password-stdin | --api-key-stdin] | logout | whoami
    modelserve keys create NAME [--expires-in-days N] | list | revoke KEY_ID
    modelserve health | info | version | gpu | system | power-profile [PROFILE]
    modelserve logs COMPONENT|SERVER_ID [--lines N] [--since S] [--container C]
    modelserve models [--name N] [--tag T]... [--origin O] [--limit L] [--offset O]
    modelserve register MODEL_ID (--upload FILE | --uri S3_URI) [--name] [--source] [--tags]
    modelserve registration MODEL_ID [--wait]
    modelserve set-active MODEL_ID [--reason R] | active [--name N] | history [--name N]
    modelserve serve (--model-name N | --model-uuid U) [--replicas] [--gpus] [--nodes] ... [--wait]
    modelserve status [SERVER_ID] | stop SERVER_ID
    modelserve chat MODEL [MESSAGE] [--system S] [--max-tokens N] [--temperature T]
                          [--no-stream]
    modelserve jobs list [--type T] [--status S] [--limit L] [--offset O] | stats
    modelserve jobs get|cancel|wait JOB_ID
    modelserve eval run --model M --dataset D [--name N] [--max-samples N] ... [--wait]
    modelserve eval get|examples JOB_ID | list
    modelserve datagen run --model M --num-examples N --output-dir D ... [--wait]
    modelserve datagen get|resume JOB_ID | list
    modelserve generate MODEL PROMPT... [--max-tokens N] [--wait]
    modelserve arena battle PROMPT [--model A --model B] [--max-tokens N] | turn ID PROMPT
    modelserve arena vote BATTLE_ID a|b|tie|both_bad | battles [ID] | votes
    modelserve arena leaderboard [--team T] [--style-control] [--bootstrap N] [--table]

The gateway's URL comes from --url, MODELSERVE_URL or GATEWAY_URL, else the saved
login's; the token from --token or MODELSERVE_TOKEN, else the one `modelserve login`
saved for that URL. Exit status: 0; 1 for an error of the platform (its JSON on stderr);
2 for a usage error; 3 when a job or a server waited for ended failed (or cancelled).
"""

from modelserve.client.cli.commands import run
from modelserve.client.cli.entry import main, parser

__all__ = ["main", "parser", "run"]
