"""CRM write-back: order booked, invoiced and paid milestones written to the CRM record
(HubSpot deals, Salesforce opportunities). See writeback.py."""
