"""`zaoshu ui`: the local web app (browse and review records, chat with models). Needs the `ui` extra."""
