print("druid-sync")
