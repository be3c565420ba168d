"""Field and edge names each Graph node type accepts in `fields=`, taken from Meta's own
spec data (facebook/facebook-business-sdk-codegen @ ad2b0b6 : api_specs/specs/*.json).

A requested name outside these sets is refused like the real API does ("Tried accessing
nonexisting field"); a known name the sandbox does not model is simply omitted, as Graph
omits fields without a value."""

from __future__ import annotations

# User.json: fields and GET edges
USER_FIELDS = frozenset(
    """
    about accounts ad_studies adaccounts age_range albums apprequestformerrecipients apprequests
    assigned_ad_accounts assigned_applications assigned_business_asset_groups assigned_pages
    assigned_product_catalogs assigned_whatsapp_business_accounts birthday business_users
    businesses client_business_id community conversations cover currency custom_labels education
    email events favorite_athletes favorite_teams feed first_name friends fundraisers gender
    groups hometown id ids_for_apps ids_for_business ids_for_pages inspirational_people
    install_type installed is_guest_user is_work_account languages last_name likes link
    live_videos local_news_megaphone_dismiss_status local_news_subscription_status locale
    location meeting_for middle_name music name name_format payment_pricepoints
    payment_transactions permissions personal_ad_accounts photos picture political posts
    profile_pic quotes relationship_status religion rich_media_documents
    shared_login_upgrade_required_by short_name significant_other sports
    supports_donate_button_in_live_video third_party_id timezone token_for_business updated_time
    verified video_upload_limits videos website
    """.split()  # noqa: SIM905 (a compact word list)
)

# Page.json: fields and GET edges
PAGE_FIELDS = frozenset(
    """
    ab_tests about access_token ad_campaign ads_eligibility ads_posts affiliation agencies
    albums app_id ar_experience artists_we_like assigned_users attire available_promo_offer_ids
    awards band_interests band_members best_page bio birthday blocked booking_agent
    breaking_news_usage built business businessprojects call_to_actions can_checkin can_post
    canvas_elements canvases category category_list chat_plugin checkins
    commerce_merchant_settings commerce_orders commerce_payouts commerce_transactions
    company_overview connected_instagram_account connected_page_backed_instagram_account
    contact_address conversations copyright_attribution_insights
    copyright_whitelisted_ig_partners country_page_likes cover crosspost_whitelisted_pages
    ctx_optimization_eligibility culinary_team current_location custom_labels
    custom_user_settings dataset delivery_and_pickup_option_info description description_html
    differently_open_offerings directed_by display_subtext displayed_message_response_time
    does_viewer_have_page_permission_link_ig emails engagement events fan_count fantasy_games
    featured_video features feed followers_count food_styles founded general_info
    general_manager genre global_brand_children global_brand_page_name global_brand_root_id
    has_added_app has_lead_access has_transitioned_to_new_page_experience
    has_whatsapp_business_number has_whatsapp_number hometown hours id image_copyrights
    impressum indexed_videos influences insights instagram_accounts instagram_business_account
    is_always_open is_calling_eligible is_chain is_community_page
    is_eligible_for_branded_content
    is_eligible_for_disable_connect_ig_btn_for_non_page_admin_am_web
    is_messenger_bot_get_started_enabled is_messenger_platform_bot is_owned
    is_permanently_closed is_published is_unclaimed is_verified is_webhooks_subscribed keywords
    leadgen_forms leadgen_tos_acceptance_time leadgen_tos_accepted leadgen_tos_accepting_user
    likes link live_videos location locations media_fingerprints members merchant_id
    merchant_review_status message_templates messaging_feature_review messaging_feature_status
    messenger_ads_default_icebreakers messenger_ads_default_quick_replies
    messenger_ads_quick_replies_type messenger_call_permissions messenger_call_settings
    messenger_lead_forms messenger_profile mini_shop_storefront mission mpg name
    name_with_location_descriptor network new_like_count notification_message_tokens
    offer_eligible overall_star_rating owner_business page_backed_instagram_accounts page_token
    parent_page parking payment_options personal_info personal_interests personas
    pharma_safety_info phone photos pickup_options picture place_type plot_outline posts
    preferred_audience press_contact price_range priority_hours privacy_info_url produced_by
    product_catalogs products promotion_eligible promotion_ineligible_reason public_transit
    published_posts rating_count ratings recipient record_label release_date restaurant_services
    restaurant_specialties roles rtb_dynamic_posts schedule scheduled_posts screenplay_by season
    secondary_receivers settings shop_setup_status single_line_address space_participants
    starring start_info store_code store_location_descriptor store_locations store_number
    stories studio subscribed_apps supports_donate_button_in_live_video tabs tagged
    talking_about_count temporary_status thread_owner threads unread_message_count
    unread_notif_count unseen_message_count user_access_expire_time username verification_status
    video_copyright_rules video_lists video_reels videos visitor_posts voip_info website
    welcome_message_flows were_here_count whatsapp_number written_by
    """.split()  # noqa: SIM905 (a compact word list)
)

# PagePost.json: fields and GET edges
POST_FIELDS = frozenset(
    """
    actions admin_creator allowed_advertising_objectives application attachments backdated_time
    call_to_action can_reply_privately child_attachments comments comments_mirroring_domain
    coordinates created_time dynamic_posts event expanded_height expanded_width feed_targeting
    from full_picture height icon id insights instagram_eligibility is_app_share
    is_eligible_for_dark_post is_eligible_for_promotion is_expired is_hidden is_inline_created
    is_instagram_eligible is_popular is_published is_spherical likes message message_tags
    multi_share_end_card multi_share_optimized parent_id permalink_url picture place privacy
    promotable_id promotion_status properties reactions scheduled_publish_time sharedposts
    shares sponsor_tags status_type story story_tags subscribed target targeting
    timeline_visibility to updated_time via video_buying_eligibility width
    """.split()  # noqa: SIM905 (a compact word list)
)

# Photo.json: fields and GET edges
PHOTO_FIELDS = frozenset(
    """
    album alt_text alt_text_custom backdated_time backdated_time_granularity can_backdate
    can_delete can_tag comments created_time event from height icon id images insights likes
    link name name_tags page_story_id picture place position source sponsor_tags target
    updated_time webp_images width
    """.split()  # noqa: SIM905 (a compact word list)
)

# AdVideo.json: fields and GET edges
VIDEO_FIELDS = frozenset(
    """
    ad_breaks admin_creator audio_isrc backdated_time backdated_time_granularity boost_ads_list
    boost_eligibility_info captions collaborators comments content_category content_tags
    copyright copyright_check_information copyright_monitoring_status created_time
    crosspost_shared_pages custom_labels description embed_html embeddable event expiration
    format from icon id is_crosspost_video is_crossposting_eligible is_episode
    is_instagram_eligible is_reference_only length likes live_audience_count live_status
    music_video_copyright permalink_url picture place poll_settings polls post_id post_views
    premiere_living_room_status privacy published scheduled_publish_time source spherical
    sponsor_tags status tags thumbnails title universal_video_id updated_time video_insights
    views
    """.split()  # noqa: SIM905 (a compact word list)
)

# IGUser.json: fields and GET edges
IG_USER_FIELDS = frozenset(
    """
    agencies authorized_adaccounts available_catalogs biography branded_content_ad_permissions
    branded_content_advertisable_medias branded_content_tag_approval business_discovery
    catalog_product_search collaboration_invites collaborative_media connected_threads_user
    content_publishing_limit creator_marketplace_creators dataset followers_count follows_count
    has_profile_pic id ig_id insights instagram_backed_threads_user is_published
    legacy_instagram_user_id live_media media media_count mentioned_comment mentioned_media name
    notification_message_tokens owner_business product_appeal profile_picture_url
    recently_searched_hashtags scheduled_media shopping_product_tag_eligibility
    shopping_review_status stories tags upcoming_events username website welcome_message_flows
    """.split()  # noqa: SIM905 (a compact word list)
)

# IGMedia.json: fields and GET edges
IG_MEDIA_FIELDS = frozenset(
    """
    alt_text boost_ads_list boost_eligibility_info branded_content_partner_promote caption
    children collaborators comments comments_count copyright_check_information
    current_live_viewer_count has_poll has_slider id ig_id insights is_comment_enabled
    is_shared_to_feed legacy_instagram_media_id like_count media_product_type media_type
    media_url owner permalink product_tags shortcode thumbnail_url timestamp username
    video_title view_count
    """.split()  # noqa: SIM905 (a compact word list)
)

# ShadowIGMediaBuilder.json: fields and GET edges
IG_CONTAINER_FIELDS = frozenset(
    """
    copyright_check_status id status status_code video_status
    """.split()  # noqa: SIM905 (a compact word list)
)
