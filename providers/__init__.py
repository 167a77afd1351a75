"""Provider adapters: plain Python that speaks each upstream's wire format. No Django models here."""
