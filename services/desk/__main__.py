"""`python -m services.desk`: a department's desk (services/desk/desk.py), configured by
ONETHING_DESK_DEPARTMENT, ONETHING_DESK_REGION and ONETHING_AMQP_URI (the desk's own broker user)."""
from services.desk.desk import main

if __name__ == "__main__":
    main()
